//! Notifications: each one's disposition decided by the user's preferences
//! ([`prefs`](super::prefs)), published when delivered, once per dedup key within the window
//! (the key is a record whose creation is the append's condition), and read marks.
//!
//! Preferences live in the store; the log holds a copy as the user's `prefs` record, which
//! every node reads (in Redis mode, shared), so a change applies on every node at once. The
//! budget is the user's `budget` record: the times of their live deliveries below `high` in
//! the window.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use store_client::{InboxRecord, TurnStore};
use wire::api::{CreateNotification, Disposition, NotificationReply};
use wire::prefs::Preferences;
use wire::{EventBody, Priority};

use super::prefs::{self, Hold, PrefError};
use crate::backplane::{
    Append, Backplane, Blobs, Event, Expect, Keep, Outcome, Unavailable, now_ms,
};

/// How long a node-shared copy of preferences is kept before it is read from the store again.
const PREFS_CACHED: Duration = Duration::from_secs(3600);

pub struct NotifyConfig {
    pub dedup_window: Duration,
    /// The budget of users who set none (0: none).
    pub budget: u32,
    pub budget_window: Duration,
}

pub struct Notifications {
    pub(super) log: Arc<dyn Backplane>,
    pub(super) store: Arc<dyn TurnStore>,
    cfg: NotifyConfig,
    /// Where pushes go (`None`: push is off), and who is online.
    pub(super) push: Option<Arc<crate::push::PushSender>>,
    pub(super) presence: Arc<dyn presence::PresenceRegistry>,
    /// Where notifications wait when the inbox cannot take them (see [`kept`](super::kept)).
    pub(super) sink: Arc<dyn super::TurnSink>,
    /// Each user's unread count as last told by the store (for events sent while it is down).
    pub(super) unread: dashmap::DashMap<String, u64>,
}

/// Why preferences could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    #[error(transparent)]
    Invalid(#[from] PrefError),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The `notification` event a producer's request makes, under a fresh id.
pub fn event(id: &str, req: CreateNotification, at_ms: i64, unread_count: u64) -> EventBody {
    EventBody::Notification {
        id: id.to_owned(),
        category: req.category,
        priority: req.priority.unwrap_or_default(),
        title: req.title,
        body: req.body,
        data: req.data.unwrap_or(Value::Null),
        created_at: crate::ids::rfc3339_ms(at_ms),
        unread_count: Some(unread_count),
    }
}

/// A step after a notification was published and kept: its failure is logged, and costs only
/// itself (a 503 would make the producer send the notification again).
fn logged(user: &str, what: &str, r: Result<(), Unavailable>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, user, what, "a step after a notification failed");
    }
}

/// A notification as the inbox keeps it; a suppressed one is kept already archived.
fn inbox_record(id: &str, req: &CreateNotification, d: Disposition, now: i64) -> InboxRecord {
    let priority = crate::backplane::to_json(&req.priority.unwrap_or_default());
    InboxRecord {
        id: id.to_owned(),
        user_id: req.user_id.clone(),
        category: req.category.clone(),
        priority: priority.trim_matches('"').to_owned(),
        title: req.title.clone(),
        body: req.body.clone(),
        data: req.data.clone().unwrap_or(Value::Null),
        created_at_ms: now,
        disposition: disposition_name(d).to_owned(),
        seen_at_ms: None,
        read_at_ms: None,
        archived_at_ms: (d == Disposition::Suppressed).then_some(now),
    }
}

/// The answer a dedup record keeps: the first id and disposition, nothing published now.
fn first_answer(r: &crate::backplane::Record) -> NotificationReply {
    let d = r.get("disposition").unwrap_or("delivered");
    NotificationReply {
        id: r.get("id").unwrap_or_default().to_owned(),
        seq: None,
        disposition: serde_json::from_value(Value::from(d)).unwrap_or(Disposition::Delivered),
    }
}

pub(super) fn store_down(e: store_client::StoreError) -> Unavailable {
    tracing::warn!(error = %e, "the store cannot be reached for preferences");
    Unavailable { code: "store_unavailable", message: "the store cannot be reached now".into() }
}

fn disposition_name(d: Disposition) -> &'static str {
    match d {
        Disposition::Delivered => "delivered",
        Disposition::Held => "held",
        Disposition::Digested => "digested",
        Disposition::Suppressed => "suppressed",
    }
}

impl Notifications {
    pub fn new(
        log: Arc<dyn Backplane>,
        store: Arc<dyn TurnStore>,
        sink: Arc<dyn super::TurnSink>,
        cfg: NotifyConfig,
        presence: Arc<dyn presence::PresenceRegistry>,
        push: Option<Arc<crate::push::PushSender>>,
    ) -> Self {
        let unread = dashmap::DashMap::new();
        Notifications { log, store, cfg, push, presence, sink, unread }
    }

    /// The user's preferences (the defaults when they set none).
    pub async fn preferences(&self, user: &str) -> Result<Preferences, Unavailable> {
        if let Some(r) = self.log.read(user, "prefs", Blobs::default()).await?
            && let Some(p) = r.record.get("doc").and_then(|d| serde_json::from_str(d).ok())
        {
            return Ok(p);
        }
        let doc = self.store.preferences(user).await.map_err(store_down)?;
        let p = doc.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
        self.share(user, &p, Expect::Absent).await?;
        Ok(p)
    }

    /// Replaces the user's preferences with a validated document; returns it as stored.
    pub async fn put_preferences(
        &self,
        user: &str,
        doc: &Value,
    ) -> Result<Preferences, PrefsError> {
        let p = prefs::validate(doc)?;
        let before = self.preferences(user).await?;
        let json = crate::backplane::to_json(&p);
        self.store.put_preferences(user, &json).await.map_err(store_down)?;
        self.share(user, &p, Expect::Any).await?;
        // A mute lifted (or shortened) ends its window now: its digest comes at once.
        let until =
            |p: &Preferences| p.mute_until.as_deref().and_then(|m| m.parse::<Timestamp>().ok());
        let now = Timestamp::from_millisecond(now_ms()).unwrap_or(Timestamp::UNIX_EPOCH);
        if let Some(old) = until(&before).filter(|old| *old > now)
            && until(&p).is_none_or(|new| new < old)
        {
            self.end_window_now(user, "muted", old.as_millisecond()).await?;
        }
        Ok(p)
    }

    /// Merges a JSON Merge Patch (RFC 7396) into the user's preferences.
    pub async fn patch_preferences(
        &self,
        user: &str,
        patch: &Value,
    ) -> Result<Preferences, PrefsError> {
        let mut doc = serde_json::to_value(self.preferences(user).await?).unwrap_or(Value::Null);
        json_patch::merge(&mut doc, patch);
        self.put_preferences(user, &doc).await
    }

    async fn share(&self, user: &str, p: &Preferences, expect: Expect) -> Result<(), Unavailable> {
        let mut a = Append::to(user, "prefs", expect, Vec::new());
        a.set = vec![("doc", crate::backplane::to_json(p))];
        a.keep = Keep::For(PREFS_CACHED);
        self.log.append_if(a).await.map(|_| ())
    }

    /// Decides a notification's disposition, keeps it in the inbox and publishes it when
    /// delivered; a repeated dedup key within the window answers the first id and
    /// disposition, `seq` null, nothing added. The inbox comes first: nothing is published
    /// that the inbox (or, while the store is down, the outbox on its way to it) does not hold.
    pub async fn notify(
        &self,
        req: CreateNotification,
    ) -> Result<(NotificationReply, bool), Unavailable> {
        let user = req.user_id.clone();
        let dedup = req.dedup_key.as_ref().map(|k| format!("dd:{k}"));
        if let Some(dd) = &dedup
            && let Some(r) = self.log.read(&user, dd, Blobs::default()).await?
        {
            return Ok((first_answer(&r.record), false));
        }
        let priority = req.priority.unwrap_or_default();
        let prefs = self.preferences(&user).await?;
        let now = now_ms();
        let budget = prefs.budget_per_hour.unwrap_or(self.cfg.budget);
        let delivered_before = match budget > 0 && priority.rank() < Priority::High.rank() {
            true => self.delivered_in_window(&user, now).await?,
            false => Vec::new(),
        };
        let used = delivered_before.len() as u64;
        let at = Timestamp::from_millisecond(now).unwrap_or(Timestamp::UNIX_EPOCH);
        let (disposition, hold) =
            prefs::disposition(&prefs, &req.category, priority, at, used, budget);
        let window = self.window(&prefs, disposition, hold, &delivered_before, at);
        let id = crate::ids::fresh("n");
        let kept = inbox_record(&id, &req, disposition, now);
        let delivered = disposition == Disposition::Delivered;
        let created_at = crate::ids::rfc3339_ms(now);
        // The inbox first; while the store is down, the outbox (stored once it is back, and
        // the push it owes queued then: the push queue is in the store too).
        let (unread, queued) = match self.store.inbox_add(&kept).await {
            Ok((unread, _)) => {
                self.remember_unread(&user, unread);
                (unread, false)
            }
            Err(e) if e.is_retryable() => {
                let push = match delivered {
                    true => self.owed_push(&prefs, &id, &req, &created_at).await?,
                    false => None,
                };
                (self.keep(&kept, push).await?, true)
            }
            Err(e) => return Err(store_down(e)),
        };
        let mut events = Vec::new();
        if delivered {
            events.push(Event::of(&event(&id, req.clone(), now, unread)));
        }
        let mut a = Append::events(&user, events);
        if let Some(dd) = &dedup {
            a = Append { record: dd.clone(), expect: Expect::Absent, ..a };
            a.set = vec![("id", id.clone()), ("disposition", disposition_name(disposition).into())];
            a.keep = Keep::For(self.cfg.dedup_window);
        }
        match self.log.append_if(a).await {
            Ok(Outcome::Appended { first, .. }) => {
                if queued {
                    self.sink.ended();
                }
                // Published and kept: what follows must not turn the answer into a 503 (the
                // producer would send it again); a failure is logged and costs only itself.
                if delivered && budget > 0 && priority.rank() < Priority::High.rank() {
                    logged(&user, "budget count", self.count_delivery(&user, now).await);
                }
                if let Some((reason, end)) = window {
                    let held = self.add_to_digest(&user, &id, &req.category, now, reason, end);
                    logged(&user, "digest window", held.await);
                }
                if delivered && !queued {
                    logged(&user, "push", self.push_if_due(&prefs, &id, &req, &created_at).await);
                }
                let seq = delivered.then_some(first);
                Ok((NotificationReply { id, seq, disposition }, true))
            }
            // Another request with the key won meanwhile: this one's inbox entry goes.
            Ok(Outcome::Refused(r)) => {
                match queued {
                    true => self.unkeep(&user, &id).await,
                    false => self.store.inbox_remove(&user, &id).await.map_err(store_down)?,
                }
                let r =
                    r.ok_or_else(|| Unavailable { code: "busy", message: "try again".into() })?;
                Ok((first_answer(&r), false))
            }
            Err(e) => {
                // Not published: the inbox entry goes too, so a retry keeps one.
                match queued {
                    true => self.unkeep(&user, &id).await,
                    false => drop(self.store.inbox_remove(&user, &id).await),
                }
                Err(e)
            }
        }
    }

    /// The window after which a held or digested notification is announced: `(reason, end)`.
    fn window(
        &self,
        prefs: &Preferences,
        d: Disposition,
        hold: Option<Hold>,
        delivered_before: &[i64],
        at: Timestamp,
    ) -> Option<(&'static str, i64)> {
        match (d, hold) {
            (Disposition::Digested, _) => {
                let oldest = delivered_before.iter().min()?;
                Some(("budget", oldest + self.cfg.budget_window.as_millis() as i64))
            }
            (_, Some(Hold::Muted)) => {
                let m = prefs.mute_until.as_deref()?.parse::<Timestamp>().ok()?;
                Some(("muted", m.as_millisecond()))
            }
            (_, Some(Hold::QuietHours)) => {
                let end = prefs::quiet_hours_end(prefs.quiet_hours.as_ref()?, at)?;
                Some(("quiet_hours", end.as_millisecond()))
            }
            _ => None,
        }
    }

    /// The times of the user's live deliveries below `high` within the window before `now`.
    async fn delivered_in_window(&self, user: &str, now: i64) -> Result<Vec<i64>, Unavailable> {
        let cutoff = now - self.cfg.budget_window.as_millis() as i64;
        let read = self.log.read(user, "budget", Blobs::default()).await?;
        let times = read.as_ref().and_then(|r| r.record.get("times")).unwrap_or_default();
        Ok(times.split(',').filter_map(|t| t.parse().ok()).filter(|t| *t > cutoff).collect())
    }

    /// Counts a live delivery against the budget (read, then written: two deliveries at the
    /// same instant may both fit; see docs/protocol-choices.md).
    async fn count_delivery(&self, user: &str, now: i64) -> Result<(), Unavailable> {
        let mut times = self.delivered_in_window(user, now).await?;
        times.push(now);
        let mut a = Append::to(user, "budget", Expect::Any, Vec::new());
        a.set = vec![("times", times.iter().map(i64::to_string).collect::<Vec<_>>().join(","))];
        a.keep = Keep::For(self.cfg.budget_window);
        self.log.append_if(a).await.map(|_| ())
    }
}
