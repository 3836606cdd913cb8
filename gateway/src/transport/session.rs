//! One endpoint's life on this node: admitted, attached to the hub, listed in presence, and
//! removed from all three when it ends, however it ends.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use wire::{ControlFrame, EndpointInfo, Transport};

use super::params::ConnectParams;
use crate::auth::Principal;
use crate::backplane::Unavailable;
use crate::hub::{Attachment, Reservation};
use crate::ids;
use crate::state::AppState;

/// A live endpoint. Dropping it detaches it from the hub and presence.
pub struct Session {
    pub state: AppState,
    pub info: Arc<EndpointInfo>,
    pub user: Arc<str>,
    /// Token expiry, seconds since the Unix epoch; `auth.refresh` moves it.
    pub exp: f64,
    /// Where this endpoint's traffic counts (its token's tenant).
    pub tenant: Arc<crate::metrics::TenantCounters>,
    hub_id: u64,
}

impl Session {
    /// Attaches an admitted endpoint and records it in presence. Returns the session and what
    /// the backplane gave it (resume replay and live queue); fails when the backplane cannot be
    /// reached (nothing to say `hello` with).
    pub async fn open(
        state: AppState,
        principal: &Principal,
        params: &ConnectParams,
        transport: Transport,
        reservation: Reservation,
    ) -> Result<(Session, Attachment), Unavailable> {
        let resume = match params.resume.as_ref() {
            Some(None) => {
                // Half a resume point: counted as a miss, attached as new.
                state.metrics.resume(false);
                None
            }
            Some(Some(r)) => Some(r),
            None => None,
        };
        let att = state.backplane.attach(reservation, resume).await?;
        if resume.is_some() && att.resumed {
            state.metrics.resume_replay.record(att.replay.len() as f64);
        }
        let info = Arc::new(EndpointInfo {
            conn_id: ids::fresh("c"),
            device_id: params.device_id.clone(),
            surface: params.surface,
            transport,
            node_id: state.node_id.clone(),
            connected_at: ids::now_rfc3339(),
        });
        if let Some(tid) = &principal.tenant
            && let Err(e) = state.notes.note_tenant(&principal.user_id, tid).await
        {
            tracing::warn!(error = %e, "cannot note the user's tenant");
        }
        if let Err(e) = state.presence.register(&principal.user_id, info.clone()).await {
            tracing::warn!(error = %e, conn_id = %info.conn_id, "presence register failed; the refresh will retry");
        }
        state
            .local_endpoints
            .insert(info.conn_id.clone(), (principal.user_id.clone(), info.clone()));
        state.metrics.endpoint_opened(transport);
        let tenant =
            state.metrics.tenants.of_endpoint(&principal.user_id, principal.tenant.as_ref());
        tenant.endpoints.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = Session {
            tenant,
            state,
            info,
            user: principal.user_id.clone(),
            exp: principal.exp,
            hub_id: att.id,
        };
        Ok((session, att))
    }

    pub fn hello(&self, att: &Attachment) -> ControlFrame {
        ControlFrame::Hello {
            conn_id: self.info.conn_id.clone(),
            user_id: self.user.to_string(),
            device_id: self.info.device_id.clone(),
            node_id: self.state.node_id.clone(),
            epoch: att.epoch.to_string(),
            seq: att.head,
            resumed: att.resumed,
            heartbeat_ms: self.state.limits.heartbeat.as_millis() as u64,
        }
    }

    /// When the token expires, on tokio's clock.
    pub fn expiry(&self) -> Instant {
        expiry_at(self.exp)
    }
}

/// When a token of expiry `exp` (seconds since the Unix epoch) runs out, on tokio's clock:
/// what ends every stream a token opened.
pub fn expiry_at(exp: f64) -> Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let left = (exp - now).clamp(0.0, 10.0 * 365.0 * 86_400.0);
    Instant::now() + Duration::from_secs_f64(left)
}

impl Drop for Session {
    fn drop(&mut self) {
        let state = &self.state;
        state.backplane.detach(&self.user, self.hub_id);
        state.local_endpoints.remove(&self.info.conn_id);
        state.metrics.endpoint_closed(self.info.transport);
        self.tenant.endpoints.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // Presence may be remote: unregister in a tracked task so a drain waits for it.
        let presence = state.presence.clone();
        let (user, conn_id) = (self.user.clone(), self.info.conn_id.clone());
        if tokio::runtime::Handle::try_current().is_ok() {
            state.connections.spawn(async move {
                if let Err(e) = presence.unregister(&user, &conn_id).await {
                    tracing::warn!(error = %e, %conn_id, "presence unregister failed; the entry will expire");
                }
            });
        }
    }
}
