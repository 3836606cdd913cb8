//! An endpoint's view of its user's log: the live queue from the hub, checked against what the
//! endpoint already has, so the client gets every seq once and in order whatever the path.
//!
//! In embedded mode the hub hands each endpoint exactly the events after its `hello`, so every
//! batch passes the first check untouched. In Redis mode an endpoint is registered for live
//! events before its replay is read, so the first events may repeat the replay (skipped here);
//! and a node whose subscription dropped may miss events (a gap, filled here from the log). An
//! event of another epoch means the log was lost (Redis restarted or flushed): the client must
//! reconnect, and will learn `resumed: false`.
//!
//! An endpoint whose live queue overflowed (a burst, a slow reader) is *behind*: it reads on
//! from the log, a chunk per wake-up, until it has caught up ([`Feed::catch_up`]). This is how
//! PROTOCOL.md v1.1's backpressure holds: a reader is never cut off, and the only reason to
//! close (4008) is that the next event it needs has left the log.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::backplane::Backplane;
use crate::hub::{Attachment, Entry, Outbox, Ready};

/// A close the feed asks for: code and reason.
pub type Resync = (u16, &'static str);

/// The most events an endpoint that is behind reads from the log per wake-up: its client gets
/// them in one flush, then the task looks again (close requests included) and reads on.
const CATCH_UP_CHUNK: u64 = 512;

pub struct Feed {
    pub outbox: Arc<Outbox>,
    epoch: Arc<str>,
    /// The newest seq the client has: `hello.seq` (replay included), then each one written.
    last: u64,
}

impl Feed {
    pub fn new(att: &Attachment) -> Feed {
        Feed { outbox: att.outbox.clone(), epoch: att.epoch.clone(), last: att.head }
    }

    /// What of a batch the outbox gave to write, in order; or a close when the client must
    /// resume instead.
    pub async fn admit(
        &mut self,
        ready: Ready,
        backplane: &dyn Backplane,
        user: &str,
    ) -> Result<VecDeque<Arc<Entry>>, Resync> {
        self.sync();
        match ready {
            Ready::Events(batch) if self.accept(&batch) => Ok(batch),
            Ready::Events(batch) => Box::pin(self.repair(batch, backplane, user)).await,
            Ready::Behind(batch) => Box::pin(self.catch_up(batch, backplane, user)).await,
            Ready::Close(code) => Err((code, "closed by the server")),
        }
    }

    /// The fast path of [`admit`](Self::admit), without an await (its state would sit in every
    /// idle connection): true when `batch` continues the client's stream exactly, taken.
    pub fn accept(&mut self, batch: &VecDeque<Arc<Entry>>) -> bool {
        self.sync();
        let ok = self.in_order(batch);
        if ok {
            self.last += batch.len() as u64;
        }
        ok
    }

    /// The epoch of the client's stream.
    pub fn epoch(&self) -> Arc<str> {
        self.epoch.clone()
    }

    /// Lets the publisher write straight to the socket while the task is idle (WebSocket).
    pub fn arm(&self) {
        self.outbox.arm(self.last);
    }

    /// Takes in what the direct path wrote while the task was idle: the client has it.
    fn sync(&mut self) {
        self.last = self.last.max(self.outbox.written());
    }

    fn same_epoch(&self, e: &Entry) -> bool {
        Arc::ptr_eq(&e.epoch, &self.epoch) || e.epoch == self.epoch
    }

    /// Whether the batch continues the client's stream exactly.
    fn in_order(&self, batch: &VecDeque<Arc<Entry>>) -> bool {
        batch.iter().zip(self.last + 1..).all(|(e, want)| e.seq == want && self.same_epoch(e))
    }

    /// What to write when the endpoint is behind: `batch` (repaired), then the next chunk of
    /// the log after it. When the chunk is full more may follow, so the endpoint stays behind
    /// and its task comes back for the next one after writing this. Callers box it.
    pub async fn catch_up(
        &mut self,
        batch: VecDeque<Arc<Entry>>,
        backplane: &dyn Backplane,
        user: &str,
    ) -> Result<VecDeque<Arc<Entry>>, Resync> {
        let mut out = self.repair(batch, backplane, user).await?;
        let upto = self.last + CATCH_UP_CHUNK;
        match backplane.missed(user, &self.epoch, self.last, upto).await {
            Ok(Some(events)) => {
                if events.len() as u64 == CATCH_UP_CHUNK {
                    self.outbox.mark_behind();
                }
                for e in events {
                    if e.seq == self.last + 1 {
                        self.last = e.seq;
                        out.push_back(e);
                    }
                }
                Ok(out)
            }
            other => {
                tracing::info!(%user, after = self.last, ?other, "the next event has left the log; closing so the client resumes");
                Err((wire::close::SLOW_CONSUMER, "fell behind the log, resume"))
            }
        }
    }

    /// The slow path: skips what the client has, fills gaps from the log. Callers box it.
    pub async fn repair(
        &mut self,
        batch: VecDeque<Arc<Entry>>,
        backplane: &dyn Backplane,
        user: &str,
    ) -> Result<VecDeque<Arc<Entry>>, Resync> {
        let mut out = VecDeque::with_capacity(batch.len());
        for e in batch {
            if !self.same_epoch(&e) {
                tracing::info!(%user, old = %self.epoch, new = %e.epoch, "user log was reset; closing for a fresh start");
                return Err((wire::close::SLOW_CONSUMER, "log reset, reconnect"));
            }
            if e.seq <= self.last {
                continue;
            }
            if e.seq > self.last + 1 {
                let missing = backplane.missed(user, &self.epoch, self.last, e.seq - 1).await;
                match missing {
                    Ok(Some(events)) if events.len() as u64 == e.seq - 1 - self.last => {
                        tracing::debug!(%user, from = self.last + 1, to = e.seq - 1, "gap filled from the log");
                        out.extend(events);
                    }
                    other => {
                        tracing::warn!(%user, from = self.last + 1, to = e.seq - 1, ?other, "gap cannot be filled; closing so the client resumes");
                        return Err((wire::close::SLOW_CONSUMER, "fell behind, resume"));
                    }
                }
            }
            self.last = e.seq;
            out.push_back(e);
        }
        Ok(out)
    }
}
