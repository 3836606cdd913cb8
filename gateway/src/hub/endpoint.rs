//! What the hub shares with each endpoint's task, and what an attaching endpoint gets back.

use std::collections::VecDeque;
use std::sync::Arc;

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
    /// Everything the hub and the task share, under one lock: 112 bytes in all with the
    /// `Notify`, so the `Arc` fits mimalloc's 128-byte class (this exists once per endpoint).
    state: Mutex<State>,
    /// Wakes the task for new events or a close request; `notify_one` keeps a permit, so a
    /// wake-up between the task's check and its wait is not lost.
    notify: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The queued entries (taken whole by the task, so a `Vec`).
    entries: Vec<Arc<Entry>>,
    /// The direct path, when a WebSocket installed one.
    direct: Option<DirectPath>,
    /// The newest seq written by the direct path (or noted by [`Outbox::arm`]): where the
    /// endpoint's stream stands when its task takes over again.
    written: u64,
    /// The bytes of JSON queued.
    bytes: u32,
    /// The close code asked for; 0 while none.
    code: u16,
    /// [`BEHIND`], [`ARMED`], [`FLUSH`].
    flags: u8,
}

/// Events were not queued since the task last looked: it reads them from the log.
const BEHIND: u8 = 1;
/// The task is waiting with nothing to write: the next event in order may go straight to the
/// socket. Off from the moment the task has anything to do until it is idle again.
const ARMED: u8 = 2;
/// Part of a frame the socket did not take is waiting: the task must flush it.
const FLUSH: u8 = 4;

/// The endpoint's socket, written by the publisher itself while the endpoint is caught up.
#[derive(Debug)]
struct DirectPath {
    sink: Arc<dyn Direct>,
    /// The epoch of the client's stream: an event of another life is never written directly.
    epoch: Arc<str>,
}

/// A way to write events to the endpoint's client from the publishing task, without waking
/// the endpoint's own task. It is only asked while the endpoint is caught up and idle, with a
/// run of events that continues the client's stream, under the user's log lock; it must not
/// block. A run of several (a producer's chunk of many deltas) goes out in one write.
pub trait Direct: Send + Sync + std::fmt::Debug {
    fn offer(&self, entries: &[Arc<Entry>]) -> Offer;
}

/// What became of a run of events offered to [`Direct`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The first this many were written whole.
    pub taken: usize,
    /// The next one was begun: the direct path holds its rest and the task must flush it.
    pub started: bool,
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

impl State {
    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Takes a flag off, saying whether it was on.
    fn take(&mut self, flag: u8) -> bool {
        let on = self.has(flag);
        self.set(flag, false);
        on
    }
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox { state: Mutex::new(State::default()), notify: Notify::new() }
    }

    /// Writes events straight to the client when the endpoint is caught up and its socket
    /// takes them; queues the rest, up to `depth` entries (and [`QUEUE_BYTES`] unless one
    /// alone); past that the endpoint is marked behind instead (its task reads them from the
    /// log). `entries` are consecutive; `direct: false` queues them all. Never blocks, never
    /// closes. False when the endpoint was asked to close (the hub drops it).
    pub(super) fn push(&self, entries: &[Arc<Entry>], depth: usize, direct: bool) -> bool {
        let mut s = self.state.lock();
        if s.code != 0 {
            return false;
        }
        let done = if direct { self.offer(&mut s, entries) } else { 0 };
        if done < entries.len() {
            s.set(ARMED, false); // queued entries go first
        }
        let mut wake = done > 0 && s.has(FLUSH);
        for entry in &entries[done..] {
            let size = u32::try_from(entry.json.len()).unwrap_or(u32::MAX);
            let full = s.entries.len() >= depth
                || (!s.entries.is_empty() && s.bytes.saturating_add(size) > QUEUE_BYTES);
            if full {
                s.set(ARMED, false);
                wake |= !s.has(BEHIND); // told once
                s.set(BEHIND, true);
                break;
            }
            s.bytes = s.bytes.saturating_add(size);
            s.entries.push(entry.clone());
            wake = true;
        }
        drop(s);
        if wake {
            self.notify.notify_one();
        }
        true
    }

    /// The direct path: how many of `entries` went to the socket (the last of them perhaps
    /// only begun, then the task must flush). Disarms unless all went whole, so every later
    /// event goes through the queue until the task has caught up again.
    fn offer(&self, s: &mut State, entries: &[Arc<Entry>]) -> usize {
        let Some(first) = entries.first() else { return 0 };
        if !s.has(ARMED) {
            return 0;
        }
        let Some(d) = s.direct.as_ref() else { return 0 };
        let in_order = first.seq == s.written + 1
            && (Arc::ptr_eq(&first.epoch, &d.epoch) || first.epoch == d.epoch);
        let offer =
            if in_order { d.sink.offer(entries) } else { Offer { taken: 0, started: false } };
        let done = offer.taken + usize::from(offer.started);
        if done < entries.len() || offer.started {
            s.set(ARMED, false);
            s.set(FLUSH, offer.started);
        }
        if done > 0 {
            s.written = entries[done - 1].seq;
        }
        done
    }

    /// Installs the direct path of a WebSocket whose client's stream is in `epoch`. It is used
    /// once the task [`arm`](Self::arm)s it.
    pub fn set_direct(&self, sink: Arc<dyn Direct>, epoch: Arc<str>) {
        self.state.lock().direct = Some(DirectPath { sink, epoch });
    }

    /// Removes the direct path for good: nothing is written past this (a close frame follows).
    pub fn unset_direct(&self) {
        let mut s = self.state.lock();
        s.direct = None;
        s.set(ARMED, false);
    }

    /// Until the task [`arm`](Self::arm)s it again, events wait in the queue: the task is about
    /// to answer a client frame whose reply goes before the event the frame publishes.
    pub fn hold(&self) {
        self.state.lock().set(ARMED, false);
    }

    /// The task is idle and its client has everything up to `last`: lets the publisher write
    /// the next events directly, unless there is work for the task or a close was asked.
    pub fn arm(&self, last: u64) {
        let mut s = self.state.lock();
        s.written = s.written.max(last);
        let idle = s.entries.is_empty() && s.flags & (BEHIND | FLUSH) == 0 && s.code == 0;
        let armed = idle && s.direct.is_some();
        s.set(ARMED, armed);
    }

    /// The newest seq the direct path wrote (0 when it never did): the task's stream continues
    /// from there.
    pub fn written(&self) -> u64 {
        self.state.lock().written
    }

    /// Asks the task to read from the log after what it has (more is there than was queued).
    pub fn mark_behind(&self) {
        let mut s = self.state.lock();
        s.set(ARMED, false);
        if !s.has(BEHIND) {
            s.set(BEHIND, true);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Asks the endpoint to close with `code`; the first request wins. Nothing is written
    /// directly after it.
    pub fn close(&self, code: u16) {
        let mut s = self.state.lock();
        s.set(ARMED, false);
        if s.code == 0 {
            s.code = code;
            drop(s);
            self.notify.notify_one();
        }
    }

    /// The close code asked for, if any.
    pub fn requested(&self) -> Option<u16> {
        Some(self.state.lock().code).filter(|c| *c != 0)
    }

    /// Resolves with a close request, or everything queued so far. Cancel-safe: nothing is
    /// taken from the queue unless it is returned.
    pub async fn ready(&self) -> Ready {
        loop {
            {
                let mut s = self.state.lock();
                if s.code != 0 {
                    return Ready::Close(s.code);
                }
                let behind = s.take(BEHIND);
                let flush = s.take(FLUSH);
                if behind || flush || !s.entries.is_empty() {
                    // The task has work: the direct path waits until it is idle again.
                    s.set(ARMED, false);
                    s.bytes = 0;
                    let entries = VecDeque::from(std::mem::take(&mut s.entries));
                    return if behind { Ready::Behind(entries) } else { Ready::Events(entries) };
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
