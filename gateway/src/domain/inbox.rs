//! The inbox side of notifications: pages with counts, marks (each publishing one
//! `notification.state` event to every device of the user), and the v1 read frame.

use store_client::{InboxRecord, InboxStatus, Mark, Marked};
use wire::EventBody;
use wire::api::{Disposition, InboxItem, InboxPage, MarkReply, MarkStatus};

use super::Notifications;
use super::notifications::store_down;
use crate::backplane::{Append, Event, Outcome, Unavailable, now_ms};

/// Most ids one mark takes.
pub const MAX_MARK_IDS: usize = 1_000;

/// What a mark names: `ids` (1 to [`MAX_MARK_IDS`]), or `all: true` (`None`: everything).
pub fn which(ids: Option<Vec<String>>, all: Option<bool>) -> Result<Option<Vec<String>>, String> {
    match (ids, all) {
        (Some(_), Some(true)) => Err("give \"ids\" or \"all\": true, not both".into()),
        (None, Some(true)) => Ok(None),
        (Some(ids), _) if !ids.is_empty() && ids.len() <= MAX_MARK_IDS => Ok(Some(ids)),
        (Some(_), _) => Err(format!("\"ids\" holds 1 to {MAX_MARK_IDS} ids")),
        (None, _) => Err("give \"ids\" or \"all\": true".into()),
    }
}

fn rfc3339(ms: Option<i64>) -> Option<String> {
    ms.map(crate::ids::rfc3339_ms)
}

fn item(r: InboxRecord) -> InboxItem {
    let json = |s: &str| serde_json::Value::from(s);
    InboxItem {
        id: r.id,
        category: r.category,
        priority: serde_json::from_value(json(&r.priority)).unwrap_or_default(),
        title: r.title,
        body: r.body,
        data: r.data,
        created_at: crate::ids::rfc3339_ms(r.created_at_ms),
        disposition: serde_json::from_value(json(&r.disposition)).unwrap_or(Disposition::Delivered),
        seen_at: rfc3339(r.seen_at_ms),
        read_at: rfc3339(r.read_at_ms),
        archived_at: rfc3339(r.archived_at_ms),
    }
}

impl Notifications {
    /// A page of the user's inbox, newest first, with both counts.
    pub async fn page(
        &self,
        user: &str,
        status: InboxStatus,
        category: Option<&str>,
        limit: u32,
        before: Option<(i64, String)>,
    ) -> Result<InboxPage, Unavailable> {
        let rows = self
            .store
            .inbox_page(user, status, category, limit + 1, before)
            .await
            .map_err(store_down)?;
        let more = rows.len() > limit as usize;
        let rows: Vec<InboxRecord> = rows.into_iter().take(limit as usize).collect();
        let next = match more {
            true => rows.last().map(|r| {
                store_client::Cursor { created_at_ms: r.created_at_ms, turn_id: r.id.clone() }
                    .encode()
            }),
            false => None,
        };
        let (unread_count, unseen_count) =
            self.store.inbox_counts(user).await.map_err(store_down)?;
        Ok(InboxPage {
            notifications: rows.into_iter().map(item).collect(),
            next,
            unread_count,
            unseen_count,
        })
    }

    /// Marks notifications of the user (`ids`, or everything created before now) and publishes
    /// one `notification.state` event with the new counts.
    pub async fn mark(
        &self,
        user: &str,
        ids: Option<Vec<String>>,
        status: MarkStatus,
    ) -> Result<MarkReply, Unavailable> {
        let now = now_ms();
        let mark = match status {
            MarkStatus::Seen => Mark::Seen,
            MarkStatus::Read => Mark::Read,
            MarkStatus::Unread => Mark::Unread,
            MarkStatus::Archived => Mark::Archived,
        };
        let which = match &ids {
            Some(ids) => Marked::Ids(ids),
            None => Marked::CreatedBefore(now + 1),
        };
        let updated = self.store.inbox_mark(user, which, mark, now).await.map_err(store_down)?;
        let (unread_count, unseen_count) =
            self.store.inbox_counts(user).await.map_err(store_down)?;
        self.remember_unread(user, unread_count);
        let all = ids.is_none().then_some(true);
        let body = EventBody::NotificationState { ids, all, status, unread_count, unseen_count };
        self.log.append_if(Append::events(user, vec![Event::of(&body)])).await?;
        if matches!(status, MarkStatus::Read | MarkStatus::Archived) {
            self.retract_read(user).await?;
        }
        Ok(MarkReply { updated, unread_count, unseen_count })
    }

    /// The v1 `notification.read` frame: marks it read in the inbox and publishes
    /// `notification.read` to every endpoint of the user.
    pub async fn mark_read(&self, user: &str, id: &str) -> Result<u64, Unavailable> {
        let one = [id.to_owned()];
        self.store
            .inbox_mark(user, Marked::Ids(&one), Mark::Read, now_ms())
            .await
            .map_err(store_down)?;
        self.retract_read(user).await?;
        let ev = Event::of(&EventBody::NotificationRead { id: id.to_owned() });
        match self.log.append_if(Append::events(user, vec![ev])).await? {
            Outcome::Appended { last, .. } => Ok(last),
            Outcome::Refused(_) => Ok(0),
        }
    }
}
