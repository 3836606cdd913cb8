//! Notifications and their dedup keys (embedded mode).

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use tokio::time::Instant;
use wire::EventBody;
use wire::api::{CreateNotification, NotificationAccepted};

use crate::hub::Hub;
use crate::ids;

/// Remembers `(user, dedup_key)` for the dedup window.
pub struct Notifications {
    seen: DashMap<(Arc<str>, String), Seen>,
    window: Duration,
}

struct Seen {
    accepted: NotificationAccepted,
    at: Instant,
}

impl Notifications {
    pub fn new(window: Duration) -> Self {
        Notifications { seen: DashMap::new(), window }
    }

    /// Publishes the notification unless its dedup key was seen within the window; returns the
    /// answer and whether it was published now.
    pub fn publish(&self, hub: &Hub, req: CreateNotification) -> (NotificationAccepted, bool) {
        let Some(key) = req.dedup_key.clone() else {
            return (Self::send(hub, req), true);
        };
        // The map entry stays locked while publishing, so two racing requests publish once.
        match self.seen.entry((Arc::from(req.user_id.as_str()), key)) {
            MapEntry::Occupied(mut o) => {
                if o.get().at.elapsed() < self.window {
                    return (o.get().accepted.clone(), false);
                }
                let accepted = Self::send(hub, req);
                o.insert(Seen { accepted: accepted.clone(), at: Instant::now() });
                (accepted, true)
            }
            MapEntry::Vacant(v) => {
                let accepted = Self::send(hub, req);
                v.insert(Seen { accepted: accepted.clone(), at: Instant::now() });
                (accepted, true)
            }
        }
    }

    fn send(hub: &Hub, req: CreateNotification) -> NotificationAccepted {
        let id = ids::fresh("n");
        let body = EventBody::Notification {
            id: id.clone(),
            category: req.category,
            priority: req.priority.unwrap_or_default(),
            title: req.title,
            body: req.body,
            data: req.data.unwrap_or(serde_json::Value::Null),
            created_at: ids::now_rfc3339(),
        };
        let seq = hub.publish(&req.user_id, &body).seq;
        NotificationAccepted { id, seq }
    }

    pub fn sweep(&self) {
        let window = self.window;
        self.seen.retain(|_, s| s.at.elapsed() < window);
    }
}
