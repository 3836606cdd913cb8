//! Serving and draining.
//!
//! A drain (SIGTERM/SIGINT, or the caller's shutdown future) goes: refuse new work (`/readyz`
//! 503, new connections and new turns/notifications 503), tell every endpoint to leave
//! (`reconnect`, close 1012), wait for them and their presence removal, then stop accepting and
//! let in-flight producer requests finish, all within `GATEWAY_DRAIN_TIMEOUT_MS`.

use std::future::Future;
use std::io;
use std::time::Duration;

use presence::EndpointKey;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::transport::stall::GuardedListener;

/// How often expired logs, turns and dedup keys are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Serves `state` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let background = Background::start(&state);
    let app = crate::api::router(state.clone());
    let stop_accepting = CancellationToken::new();
    let server = {
        let stop = stop_accepting.clone();
        let listener = GuardedListener::new(listener, state.limits.write_stall);
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await
        })
    };

    shutdown.await;
    let deadline = Instant::now() + state.limits.drain_timeout;
    tracing::info!(endpoints = state.local_endpoints.len(), "draining");
    state.begin_drain();
    state.connections.close();
    // WebSocket tasks end on their own after the goodbye; SSE streams end and their sessions
    // drop. Wait until no endpoint is left (or the deadline).
    let endpoints_gone = async {
        while !state.local_endpoints.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        state.connections.wait().await;
    };
    if timeout_at(deadline, endpoints_gone).await.is_err() {
        tracing::warn!(
            left = state.local_endpoints.len(),
            "drain deadline reached with endpoints still open"
        );
    }
    stop_accepting.cancel();
    match timeout_at(deadline, server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => tracing::error!(error = %join, "server task failed"),
        Err(_) => tracing::warn!("drain deadline reached with requests in flight"),
    }
    background.stop().await;
    tracing::info!("drained");
    Ok(())
}

/// Owned background tasks, stopped on shutdown.
struct Background {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Background {
    fn start(state: &AppState) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = st.cancelled() => return,
                    _ = tick.tick() => {
                        let retired = s.hub.sweep();
                        s.turns.sweep();
                        s.notifications.sweep();
                        tracing::debug!(retired, users = s.hub.users(), "swept");
                    }
                }
            }
        });
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move {
            // Refresh well inside the TTL so one late beat does not drop live endpoints.
            let mut tick = tokio::time::interval(s.presence.ttl() / 3);
            loop {
                tokio::select! {
                    _ = st.cancelled() => return,
                    _ = tick.tick() => {
                        let keys: Vec<EndpointKey> = s
                            .local_endpoints
                            .iter()
                            .map(|e| EndpointKey { user_id: e.value().to_string(), conn_id: e.key().clone() })
                            .collect();
                        if let Err(e) = s.presence.refresh(&keys).await {
                            tracing::warn!(error = %e, "presence refresh failed");
                        }
                    }
                }
            }
        });
        Background { stop, tasks }
    }

    async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
