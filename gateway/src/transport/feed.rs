//! An endpoint's view of its user's log: the live queue from the hub, checked against what the
//! endpoint already has, so the client gets every seq once and in order whatever the path.
//!
//! In embedded mode the hub hands each endpoint exactly the events after its `hello`, so every
//! batch passes the first check untouched. In Redis mode an endpoint is registered for live
//! events before its replay is read, so the first events may repeat the replay (skipped here);
//! and a node whose subscription dropped may miss events (a gap, filled here from the log). An
//! event of another epoch means the log was lost (Redis restarted or flushed): the client must
//! reconnect, and will learn `resumed: false`.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::backplane::Backplane;
use crate::hub::{Attachment, Entry, Outbox};

/// A close the feed asks for: code and reason.
pub type Resync = (u16, &'static str);

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

    /// What of `batch` to write, in order; or a close when the client must resume instead.
    pub async fn admit(
        &mut self,
        batch: VecDeque<Arc<Entry>>,
        backplane: &dyn Backplane,
        user: &str,
    ) -> Result<VecDeque<Arc<Entry>>, Resync> {
        if self.accept(&batch) {
            return Ok(batch);
        }
        Box::pin(self.repair(batch, backplane, user)).await
    }

    /// The fast path of [`admit`](Self::admit), without an await (its state would sit in every
    /// idle connection): true when `batch` continues the client's stream exactly, taken.
    pub fn accept(&mut self, batch: &VecDeque<Arc<Entry>>) -> bool {
        let ok = self.in_order(batch);
        if ok {
            self.last += batch.len() as u64;
        }
        ok
    }

    fn same_epoch(&self, e: &Entry) -> bool {
        Arc::ptr_eq(&e.epoch, &self.epoch) || e.epoch == self.epoch
    }

    /// Whether the batch continues the client's stream exactly.
    fn in_order(&self, batch: &VecDeque<Arc<Entry>>) -> bool {
        batch.iter().zip(self.last + 1..).all(|(e, want)| e.seq == want && self.same_epoch(e))
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
