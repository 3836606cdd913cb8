//! An endpoint joining and leaving its user's log: admitted against the per-user limit, then
//! attached (what it missed, and registration for live events, in one step under the user's
//! lock), detached when its connection closes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Attachment, Hub, Outbox, Reservation};

/// Why an endpoint cannot be admitted.
#[derive(Debug, thiserror::Error)]
#[error("user already holds {0} endpoints (GATEWAY_MAX_ENDPOINTS_PER_USER)")]
pub struct TooManyEndpoints(pub usize);

/// A resume point a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeFrom {
    pub epoch: String,
    pub after: u64,
}

impl Hub {
    /// Admits one more endpoint for `user` if the limit allows; the reservation is released
    /// when dropped unattached (a failed upgrade).
    pub fn reserve(&self, user: &str) -> Result<Reservation, TooManyEndpoints> {
        let max = self.max_endpoints;
        self.with_log(user, |log| {
            if log.endpoints.len() + log.reserved >= max {
                return Err(TooManyEndpoints(max));
            }
            log.reserved += 1;
            Ok(())
        })?;
        let slot = self.users.get(user).map(|s| s.clone());
        Ok(Reservation::new(Arc::from(user), slot))
    }

    /// Registers an admitted endpoint for live events and returns what it missed since
    /// `resume` (all of it, or nothing with `resumed: false`), atomically with respect to
    /// publishing.
    pub fn attach(&self, reservation: Reservation, resume: Option<&ResumeFrom>) -> Attachment {
        let outbox = Arc::new(Outbox::new());
        let id = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        let user = reservation.consume();
        let (epoch, head, replay) = self.with_log(&user, |log| {
            log.reserved = log.reserved.saturating_sub(1);
            let replay =
                resume.filter(|r| *r.epoch == *log.epoch).and_then(|r| log.ring.since(r.after));
            log.endpoints.push((id, outbox.clone()));
            (log.epoch.clone(), log.ring.head(), replay)
        });
        if resume.is_some() {
            let hit = replay.is_some();
            self.metrics.resume(hit);
        }
        Attachment {
            id,
            user,
            epoch,
            head,
            resumed: replay.is_some(),
            replay: replay.unwrap_or_default(),
            outbox,
        }
    }

    /// Registers an admitted endpoint for live events only (Redis mode: the caller reads what it
    /// missed from Redis afterwards, and the endpoint skips what it gets twice).
    pub fn attach_live(&self, reservation: Reservation) -> (u64, Arc<str>, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new());
        let id = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        let user = reservation.consume();
        self.with_log(&user, |log| {
            log.reserved = log.reserved.saturating_sub(1);
            log.endpoints.push((id, outbox.clone()));
        });
        (id, user, outbox)
    }

    /// Removes an endpoint from live delivery (its connection closed).
    /// Returns whether that was the user's last endpoint here (Redis mode unsubscribes then).
    pub fn detach(&self, user: &str, id: u64) -> bool {
        let Some(slot) = self.users.get(user).map(|s| s.clone()) else { return true };
        let mut log = slot.lock();
        log.endpoints.retain(|(ep, _)| *ep != id);
        log.endpoints.is_empty() && log.reserved == 0
    }
}
