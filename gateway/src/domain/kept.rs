//! Notifications the inbox could not take when they were sent (the store was down): each is
//! kept in the same durable outbox as finished turns before it is published, so the producer
//! gets its 202, every device gets the event, and the persister adds it to the inbox, once,
//! when the store is back (the inbox's write is idempotent on the id).
//!
//! In embedded mode the outbox holds the whole notification; in Redis mode it holds its key and
//! the notification waits in the user's slot as the record `nk:<id>`, read by whichever node
//! drains the entry, as a turn's state is.
//!
//! While the store is down the event's `unread_count` cannot be counted: it is this node's
//! last known count for the user plus those kept since (see docs/protocol-choices.md).

use std::time::Duration;

use store_client::{Final, InboxRecord, KeptNote, PushEntry};

use super::Notifications;
use crate::backplane::redis::Assembled;
use crate::backplane::{Append, Blobs, Expect, Keep, Unavailable};

/// Users whose last unread count a node remembers; past this the memory starts again.
const REMEMBERED: usize = 100_000;
/// How long a kept notification's record outlives its storing (a second drain finds it gone).
const AFTER_STORED: Duration = Duration::from_secs(60);

fn record_name(id: &str) -> String {
    format!("nk:{id}")
}

impl Notifications {
    /// Notes the user's unread count as the store just said it.
    pub(super) fn remember_unread(&self, user: &str, unread: u64) {
        self.make_room(user);
        self.unread.insert(user.to_owned(), unread);
    }

    /// Keeps the remembered counts bounded: a new user past [`REMEMBERED`] starts them again.
    fn make_room(&self, user: &str) {
        if self.unread.len() >= REMEMBERED && !self.unread.contains_key(user) {
            self.unread.clear();
        }
    }

    /// Keeps `n` for the store, with the push its delivery owes (queued when `n` is stored);
    /// returns the unread count its event carries.
    pub(super) async fn keep(
        &self,
        n: &InboxRecord,
        push: Option<PushEntry>,
    ) -> Result<u64, Unavailable> {
        tracing::warn!(id = %n.id, "the inbox cannot be written; the notification waits in the outbox");
        let kept = KeptNote { note: n.clone(), push };
        if !self.sink.wants_copy() {
            let mut a = Append::to(&n.user_id, &record_name(&n.id), Expect::Any, Vec::new());
            a.set = vec![("json", crate::backplane::to_json(&kept))];
            a.keep = Keep::Forever;
            self.log.append_if(a).await?;
        }
        self.sink.keep_note(&kept).await?;
        self.make_room(&n.user_id);
        let mut known = self.unread.entry(n.user_id.clone()).or_insert(0);
        *known += n.archived_at_ms.is_none() as u64;
        Ok(*known)
    }

    /// A kept notification was not published: out of the outbox (Redis: its record goes too).
    pub(super) async fn unkeep(&self, user: &str, id: &str) {
        self.sink.drop_note(id).await;
        if !self.sink.wants_copy()
            && let Err(e) = self.stored(user, id).await
        {
            tracing::warn!(%id, error = %e, "an unpublished notification's record stays in Redis");
        }
    }

    /// The kept notification `id` as the Redis outbox stores it.
    pub async fn assemble(&self, user: &str, id: &str) -> Result<Assembled, Unavailable> {
        let Some(read) = self.log.read(user, &record_name(id), Blobs::default()).await? else {
            return Ok(Assembled::Gone);
        };
        let json = read.record.get("json").unwrap_or_default();
        match serde_json::from_str::<KeptNote>(json) {
            Ok(n) => Ok(Assembled::Ended(Box::new(Final::Note(n)))),
            Err(e) => {
                tracing::error!(%id, error = %e, "a kept notification is unreadable; dropped");
                Ok(Assembled::Gone)
            }
        }
    }

    /// Stored: its record goes.
    pub async fn stored(&self, user: &str, id: &str) -> Result<(), Unavailable> {
        self.log.keep(user, &record_name(id), Keep::For(AFTER_STORED)).await
    }
}
