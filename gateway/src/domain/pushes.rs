//! Which notifications are pushed, and retracts (PROTOCOL.md v1.1, §Notifications, Push): a
//! delivered notification of at least `GATEWAY_PUSH_MIN_PRIORITY` whose user has no live
//! endpoint on any node (presence) and whose category's `push` is on, and every critical one;
//! a retract when pushed notifications are read or archived. The calls go through the push
//! outbox ([`crate::push`]).

use serde_json::json;
use store_client::PushEntry;
use wire::Priority;
use wire::api::CreateNotification;
use wire::prefs::Preferences;

use super::Notifications;
use super::notifications::store_down;
use crate::backplane::{Append, Blobs, Expect, Unavailable};

impl Notifications {
    /// Remembers the user's tenant (`tid`) as last seen by any node, for push calls.
    pub async fn note_tenant(&self, user: &str, tenant: &str) -> Result<(), Unavailable> {
        let mut a = Append::to(user, "tenant", Expect::Any, Vec::new());
        a.set = vec![("tid", tenant.to_owned())];
        self.log.append_if(a).await.map(|_| ())
    }

    /// Queues the push of a delivered notification when the rules say so.
    pub(super) async fn push_if_due(
        &self,
        prefs: &Preferences,
        id: &str,
        req: &CreateNotification,
        created_at: &str,
    ) -> Result<(), Unavailable> {
        let (Some(push), Some(entry)) =
            (&self.push, self.owed_push(prefs, id, req, created_at).await?)
        else {
            return Ok(());
        };
        push.enqueue(&entry).await.map_err(store_down)
    }

    /// The push call a delivered notification owes, when the rules say it owes one.
    pub(super) async fn owed_push(
        &self,
        prefs: &Preferences,
        id: &str,
        req: &CreateNotification,
        created_at: &str,
    ) -> Result<Option<PushEntry>, Unavailable> {
        let Some(push) = &self.push else { return Ok(None) };
        let priority = req.priority.unwrap_or_default();
        let wanted = priority == Priority::Critical
            || (priority.rank() >= push.config().min_priority.rank()
                && prefs.category(&req.category).push
                && self.offline(&req.user_id).await);
        if !wanted {
            return Ok(None);
        }
        let tenant = self.log.read(&req.user_id, "tenant", Blobs::default()).await?;
        let tenant = tenant.and_then(|r| r.record.get("tid").map(str::to_owned));
        let body = json!({
            "type": "notification",
            "user_id": req.user_id,
            "tenant": tenant,
            "notification": {
                "id": id, "category": req.category, "priority": priority, "title": req.title,
                "body": req.body, "data": req.data.clone().unwrap_or_default(), "created_at": created_at,
            },
        });
        Ok(Some(PushEntry {
            key: format!("push-{id}"),
            user_id: req.user_id.clone(),
            kind: "notification".into(),
            notification_id: Some(id.to_owned()),
            body: body.to_string(),
            attempts: 0,
            created_at_ms: crate::backplane::now_ms(),
        }))
    }

    /// Whether no endpoint of the user is live on any node (presence unknown: pushed anyway,
    /// better twice than never).
    async fn offline(&self, user: &str) -> bool {
        self.presence.list(user).await.map_or(true, |endpoints| endpoints.is_empty())
    }

    /// After a mark: one retract for the pushed notifications it read or archived.
    pub(super) async fn retract_read(&self, user: &str) -> Result<(), Unavailable> {
        let Some(push) = &self.push else { return Ok(()) };
        let ids = self.store.push_take_retractable(user).await.map_err(store_down)?;
        if ids.is_empty() {
            return Ok(());
        }
        let entry = PushEntry {
            key: crate::ids::fresh("retract"),
            user_id: user.to_owned(),
            kind: "retract".into(),
            notification_id: None,
            body: json!({"type": "retract", "user_id": user, "ids": ids}).to_string(),
            attempts: 0,
            created_at_ms: crate::backplane::now_ms(),
        };
        push.enqueue(&entry).await.map_err(store_down)
    }
}
