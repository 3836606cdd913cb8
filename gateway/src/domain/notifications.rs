//! Notifications: published once per dedup key within the window (the key is a record whose
//! creation is the append's condition), and read marks.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wire::EventBody;
use wire::api::{CreateNotification, NotificationAccepted};

use crate::backplane::{Append, Backplane, Event, Expect, Keep, Outcome, Unavailable};

pub struct Notifications {
    log: Arc<dyn Backplane>,
    dedup_window: Duration,
}

/// The `notification` event a producer's request makes, under a fresh id.
pub fn event(id: &str, req: CreateNotification) -> EventBody {
    EventBody::Notification {
        id: id.to_owned(),
        category: req.category,
        priority: req.priority.unwrap_or_default(),
        title: req.title,
        body: req.body,
        data: req.data.unwrap_or(Value::Null),
        created_at: crate::ids::now_rfc3339(),
    }
}

impl Notifications {
    pub fn new(log: Arc<dyn Backplane>, dedup_window: Duration) -> Self {
        Notifications { log, dedup_window }
    }

    /// Publishes a notification unless its dedup key was seen within the window; returns the
    /// answer and whether it was published now.
    pub async fn notify(
        &self,
        req: CreateNotification,
    ) -> Result<(NotificationAccepted, bool), Unavailable> {
        let id = crate::ids::fresh("n");
        let user = req.user_id.clone();
        let key = req.dedup_key.clone();
        let ev = vec![Event::of(&event(&id, req))];
        let Some(key) = key else {
            let seq = self.appended(self.log.append_if(Append::events(&user, ev)).await?);
            return Ok((NotificationAccepted { id, seq }, true));
        };
        let mut a = Append::to(&user, &format!("dd:{key}"), Expect::Absent, ev);
        a.set = vec![("id", id.clone())];
        a.keep = Keep::For(self.dedup_window);
        match self.log.append_if(a).await? {
            Outcome::Appended { first, .. } => Ok((NotificationAccepted { id, seq: first }, true)),
            Outcome::Refused(Some(r)) => {
                let id = r.get("id").unwrap_or_default().to_owned();
                Ok((NotificationAccepted { id, seq: r.first_seq }, false))
            }
            Outcome::Refused(None) => {
                Err(Unavailable { code: "busy", message: "try again".into() })
            }
        }
    }

    /// Publishes `notification.read` to every endpoint of the user.
    pub async fn mark_read(&self, user: &str, id: &str) -> Result<u64, Unavailable> {
        let ev = Event::of(&EventBody::NotificationRead { id: id.to_owned() });
        Ok(self.appended(self.log.append_if(Append::events(user, vec![ev])).await?))
    }

    fn appended(&self, o: Outcome) -> u64 {
        match o {
            Outcome::Appended { last, .. } => last,
            Outcome::Refused(_) => 0,
        }
    }
}
