//! What the hub keeps per endpoint, and what an attaching endpoint gets back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use super::{Entry, UserLog};

/// The hub's side of one endpoint.
pub(super) struct Outbox {
    pub id: u64,
    pub tx: mpsc::Sender<Arc<Entry>>,
    pub ctl: Arc<EndpointCtl>,
}

/// Lets the hub (or a drain) tell a connection task to close, even while that task is blocked
/// writing to a client that does not read.
#[derive(Debug, Default)]
pub struct EndpointCtl {
    /// The close code asked for; 0 while none.
    code: AtomicU16,
    notify: Notify,
}

impl EndpointCtl {
    /// Asks the connection to close with `code`; the first request wins.
    pub fn close(&self, code: u16) {
        if self.code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.notify.notify_one();
        }
    }

    /// The close code asked for, if any.
    pub fn requested(&self) -> Option<u16> {
        Some(self.code.load(Ordering::Acquire)).filter(|c| *c != 0)
    }

    /// Resolves with the close code once a close was asked for.
    pub async fn closed(&self) -> u16 {
        loop {
            let code = self.code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// An admitted endpoint not yet attached. Dropping it gives the place back.
pub struct Reservation {
    user: Arc<str>,
    slot: Option<Arc<Mutex<UserLog>>>,
}

impl Reservation {
    pub(super) fn new(user: Arc<str>, slot: Option<Arc<Mutex<UserLog>>>) -> Self {
        Reservation { user, slot }
    }

    /// Hands the place to `attach`, which takes it out of `reserved` under the log lock.
    pub(super) fn consume(mut self) -> Arc<str> {
        self.slot = None;
        self.user.clone()
    }

    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut log = slot.lock();
            log.reserved = log.reserved.saturating_sub(1);
        }
    }
}

/// An attached endpoint: where it starts and the queue it reads.
pub struct Attachment {
    /// The hub's id of this endpoint, for `detach`.
    pub id: u64,
    pub user: Arc<str>,
    pub epoch: Arc<str>,
    /// The newest seq at attach time (`hello.seq`).
    pub head: u64,
    pub resumed: bool,
    /// Events after the resume point, to send before anything from `rx`.
    pub replay: Vec<Arc<Entry>>,
    /// Live events, in seq order, continuing `replay`.
    pub rx: mpsc::Receiver<Arc<Entry>>,
    pub ctl: Arc<EndpointCtl>,
}
