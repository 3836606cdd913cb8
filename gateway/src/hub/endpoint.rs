//! What the hub shares with each endpoint's task, and what an attaching endpoint gets back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Entry, UserLog};

/// One endpoint's bounded queue of events, and a way to ask its task to close, even while that
/// task is blocked writing to a client that does not read.
///
/// Smaller than a channel (this exists once per connection, tens of thousands of times), and
/// the task takes everything queued in one lock.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Arc<Entry>>>,
    depth: usize,
    /// The close code asked for; 0 while none.
    code: AtomicU16,
    /// Wakes the task for new events or a close request; `notify_one` keeps a permit, so a
    /// wake-up between the task's check and its wait is not lost.
    notify: Notify,
}

/// What an endpoint's task should do next.
#[derive(Debug)]
pub enum Ready {
    /// Write these, in order.
    Events(VecDeque<Arc<Entry>>),
    /// Close with this code.
    Close(u16),
}

impl Outbox {
    pub(super) fn new(depth: usize) -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            depth,
            code: AtomicU16::new(0),
            notify: Notify::new(),
        }
    }

    /// Queues an event; false when the queue is full (the endpoint fell behind).
    pub(super) fn push(&self, entry: Arc<Entry>) -> bool {
        {
            let mut q = self.queue.lock();
            if q.len() >= self.depth {
                return false;
            }
            q.push_back(entry);
        }
        self.notify.notify_one();
        true
    }

    /// Asks the endpoint to close with `code`; the first request wins.
    pub fn close(&self, code: u16) {
        if self.code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.notify.notify_one();
        }
    }

    /// The close code asked for, if any.
    pub fn requested(&self) -> Option<u16> {
        Some(self.code.load(Ordering::Acquire)).filter(|c| *c != 0)
    }

    /// Resolves with a close request, or everything queued so far. Cancel-safe: nothing is
    /// taken from the queue unless it is returned.
    pub async fn ready(&self) -> Ready {
        loop {
            if let Some(code) = self.requested() {
                return Ready::Close(code);
            }
            {
                let mut q = self.queue.lock();
                if !q.is_empty() {
                    return Ready::Events(std::mem::take(&mut *q));
                }
            }
            self.notify.notified().await;
        }
    }

    /// Resolves once a close was asked for.
    pub async fn closed(&self) -> u16 {
        loop {
            if let Some(code) = self.requested() {
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
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut log = slot.lock();
            log.reserved = log.reserved.saturating_sub(1);
        }
    }
}

/// An attached endpoint: where it starts and the outbox it reads.
pub struct Attachment {
    /// The hub's id of this endpoint, for `detach`.
    pub id: u64,
    pub user: Arc<str>,
    pub epoch: Arc<str>,
    /// The newest seq at attach time (`hello.seq`).
    pub head: u64,
    pub resumed: bool,
    /// Events after the resume point, to send before anything from the outbox.
    pub replay: Vec<Arc<Entry>>,
    /// Live events, in seq order, continuing `replay`.
    pub outbox: Arc<Outbox>,
}
