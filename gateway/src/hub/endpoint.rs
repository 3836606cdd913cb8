//! What the hub shares with each endpoint's task, and what an attaching endpoint gets back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Entry, UserLog};

/// One endpoint's short queue of live events (shared entries, not copies), and a way to ask
/// its task to close, even while that task is blocked writing to a client that does not read.
///
/// The queue is only the fast path of reading the user's log. When it is full (a burst, a
/// slow reader) further events are not queued: the endpoint is marked *behind*, and its task
/// reads what it missed from the log itself, in order, at the pace its client reads
/// (`transport::feed`). So a reading client is never cut off; one whose next event has left
/// the log is (4008). Smaller than a channel (this exists once per connection, tens of
/// thousands of times), and the task takes everything queued in one lock.
#[derive(Debug)]
pub struct Outbox {
    /// The queued entries, and the bytes of their JSON.
    queue: Mutex<(VecDeque<Arc<Entry>>, u32)>,
    /// At most this many entries are queued (and at most [`QUEUE_BYTES`] unless one alone).
    depth: u32,
    /// The close code asked for; 0 while none.
    code: AtomicU16,
    /// Events were not queued since the task last looked: it reads them from the log.
    behind: AtomicBool,
    /// Wakes the task for new events or a close request; `notify_one` keeps a permit, so a
    /// wake-up between the task's check and its wait is not lost.
    notify: Notify,
}

/// The bytes of JSON an endpoint's queue holds before it reads on from the log instead: a
/// stalled endpoint keeps alive no more than this of events the log has dropped.
pub const QUEUE_BYTES: u32 = 64 * 1024;

/// What an endpoint's task should do next.
#[derive(Debug)]
pub enum Ready {
    /// Write these, in order.
    Events(VecDeque<Arc<Entry>>),
    /// Write these, then what the log holds after them: events were left out of the queue.
    Behind(VecDeque<Arc<Entry>>),
    /// Close with this code.
    Close(u16),
}

impl Outbox {
    pub(super) fn new(depth: usize) -> Self {
        Outbox {
            queue: Mutex::new((VecDeque::new(), 0)),
            depth: u32::try_from(depth).unwrap_or(u32::MAX),
            code: AtomicU16::new(0),
            behind: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// Queues an event; when the queue is full the endpoint is marked behind instead (its task
    /// reads the event from the log). Never blocks, never closes.
    pub(super) fn push(&self, entry: Arc<Entry>) {
        {
            let mut q = self.queue.lock();
            let (queue, bytes) = &mut *q;
            let size = u32::try_from(entry.json.len()).unwrap_or(u32::MAX);
            let full = queue.len() as u32 >= self.depth
                || (!queue.is_empty() && bytes.saturating_add(size) > QUEUE_BYTES);
            if full {
                drop(q);
                self.mark_behind();
                return;
            }
            *bytes = bytes.saturating_add(size);
            queue.push_back(entry);
        }
        self.notify.notify_one();
    }

    /// Asks the task to read from the log after what it has (more is there than was queued).
    pub fn mark_behind(&self) {
        if !self.behind.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
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
                let (queue, bytes) = &mut *q;
                if self.behind.swap(false, Ordering::AcqRel) {
                    *bytes = 0;
                    return Ready::Behind(std::mem::take(queue));
                }
                if !queue.is_empty() {
                    *bytes = 0;
                    return Ready::Events(std::mem::take(queue));
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
