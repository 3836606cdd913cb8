//! Digests (PROTOCOL.md v1.1, §Notifications): the notifications a window held (quiet hours,
//! a mute) or digested (the budget) are announced once, in one `notification.digest` event,
//! when the window is over.
//!
//! Each window of a user is a record (`dg:<reason>:<end ms>`) whose items are its
//! notifications, and a timer in the shared `digests` set due at its end. Every node's sweep
//! looks at the due timers; the digest is appended on condition that the record is not yet
//! `fired`, so on any number of nodes it is published once, and a node that dies leaves the
//! timer to the others.

use std::collections::BTreeMap;
use std::time::Duration;

use wire::EventBody;

use super::Notifications;
use crate::backplane::{Append, Blobs, Event, Expect, Keep, Outcome, Unavailable, now_ms};

/// The shared timer set of digest windows.
pub const DIGESTS: &str = "digests";
/// Windows looked at per sweep.
const PER_SWEEP: usize = 256;
/// How long a window's record outlives its end (a sweep will have fired it long before).
const AFTER_END: Duration = Duration::from_secs(86_400);

impl Notifications {
    /// Adds a notification to the digest of its window (`reason`, ending at `end_ms`).
    pub(super) async fn add_to_digest(
        &self,
        user: &str,
        id: &str,
        category: &str,
        created_ms: i64,
        reason: &'static str,
        end_ms: i64,
    ) -> Result<(), Unavailable> {
        let name = format!("dg:{reason}:{end_ms}");
        let keep = Keep::For(Duration::from_millis((end_ms - now_ms()).max(0) as u64) + AFTER_END);
        let item = format!("{created_ms}|{id}|{category}");
        // Joins the window while it has not fired; the first one makes it.
        for expect in [Expect::Field("fired", "0"), Expect::Absent] {
            let mut a = Append::to(user, &name, expect, Vec::new());
            a.items = vec![item.clone()];
            a.keep = keep;
            if expect == Expect::Absent {
                a.set = vec![("fired", "0".into())];
            }
            match self.log.append_if(a).await? {
                Outcome::Appended { .. } => {
                    return self.log.watch(DIGESTS, &format!("{user}\n{name}"), end_ms).await;
                }
                Outcome::Refused(Some(r)) if r.get("fired") == Some("1") => {
                    tracing::warn!(%user, %name, "a notification held for a window that already ended");
                    return Ok(());
                }
                Outcome::Refused(_) => {}
            }
        }
        Ok(())
    }

    /// Ends a window before its time (a mute lifted): its digest says it ended now, and the
    /// next sweep publishes it.
    pub(super) async fn end_window_now(
        &self,
        user: &str,
        reason: &str,
        end_ms: i64,
    ) -> Result<(), Unavailable> {
        let name = format!("dg:{reason}:{end_ms}");
        let now = now_ms();
        let mut a = Append::to(user, &name, Expect::Field("fired", "0"), Vec::new());
        a.set = vec![("until", now.to_string())];
        if let Outcome::Appended { .. } = self.log.append_if(a).await? {
            self.log.watch(DIGESTS, &format!("{user}\n{name}"), now).await?;
        }
        Ok(())
    }

    /// Publishes the digest of every window that is over (each once, whichever node); returns
    /// how many this node published.
    pub async fn fire_digests(&self) -> Result<u64, Unavailable> {
        let mut published = 0;
        let due = self.log.due(DIGESTS, now_ms(), PER_SWEEP).await?;
        for member in due {
            let Some((user, name)) = member.split_once('\n') else {
                self.log.unwatch(DIGESTS, &member).await?;
                continue;
            };
            let read = self.log.read(user, name, Blobs { text: false, items: true }).await?;
            if let Some(r) = read.filter(|r| r.record.get("fired") == Some("0")) {
                let ended = r.record.get("until").and_then(|u| u.parse().ok());
                let body = digest(name, ended, &r.items);
                let mut a =
                    Append::to(user, name, Expect::Field("fired", "0"), vec![Event::of(&body)]);
                a.set = vec![("fired", "1".into())];
                if let Outcome::Appended { .. } = self.log.append_if(a).await? {
                    tracing::debug!(%user, %name, "digest published");
                    published += 1;
                }
            }
            self.log.unwatch(DIGESTS, &member).await?;
        }
        Ok(published)
    }
}

/// The digest event of a window record `dg:<reason>:<end ms>` (ended at `ended` when it was
/// cut short) and its items
/// (`<created ms>|<id>|<category>`).
fn digest(name: &str, ended: Option<i64>, items: &[String]) -> EventBody {
    let mut parts = name.splitn(3, ':').skip(1);
    let reason = parts.next().unwrap_or("budget").to_owned();
    let end: i64 = ended.or_else(|| parts.next().and_then(|e| e.parse().ok())).unwrap_or(0);
    let (mut ids, mut categories, mut from) = (Vec::new(), BTreeMap::new(), i64::MAX);
    for item in items {
        let mut f = item.splitn(3, '|');
        let (Some(at), Some(id), Some(category)) = (f.next(), f.next(), f.next()) else { continue };
        from = from.min(at.parse().unwrap_or(i64::MAX));
        ids.push(id.to_owned());
        *categories.entry(category.to_owned()).or_insert(0) += 1;
    }
    EventBody::NotificationDigest {
        count: ids.len() as u64,
        ids,
        categories,
        reason,
        from: crate::ids::rfc3339_ms(if from == i64::MAX { end } else { from }),
        until: crate::ids::rfc3339_ms(end),
    }
}
