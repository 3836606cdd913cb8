//! Checks every event an endpoint receives against what the protocol promises: per endpoint a
//! contiguous `seq` with nothing twice; each turn's deltas complete, in index order, adding up
//! to what the producer sent; nothing of another user; every device of a user seeing the same
//! event at the same seq.
//!
//! It is plain data (no I/O) so it can be tested on crafted streams.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use wire::{EventBody, LogEvent, TurnStatus};

/// A kind of broken promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A seq never received (counted when the run ends).
    Lost,
    /// A seq received twice.
    Duplicate,
    /// A seq received after a later one.
    Reordered,
    /// An event of another user.
    ForeignUser,
    /// A delta whose index is not the next of its turn.
    IndexOrder,
    /// A turn whose deltas do not add up to what the producer sent.
    WrongText,
    /// Two devices of one user got different events at the same seq.
    DeviceMismatch,
    /// A resume the gateway refused although the log should hold the events.
    ResumeRefused,
    /// An A2A follower's artifact chunk missing, repeated or out of order, or no terminal
    /// update (the tasks scenario).
    A2aUpdate,
    /// A push to an offline user never accepted by the webhook, sent again after a 2xx, badly
    /// signed or without `Idempotency-Key` (the push scenario).
    Push,
}

/// Counts violations by kind and keeps a few examples to print.
#[derive(Default)]
pub struct Violations {
    inner: Mutex<(HashMap<Kind, u64>, Vec<String>)>,
}

const EXAMPLES: usize = 12;

impl Violations {
    pub fn record(&self, kind: Kind, n: u64, example: impl FnOnce() -> String) {
        let mut g = self.inner.lock();
        *g.0.entry(kind).or_default() += n;
        if g.1.len() < EXAMPLES {
            let e = example();
            g.1.push(format!("{kind:?}: {e}"));
        }
    }

    pub fn counts(&self) -> std::collections::BTreeMap<Kind, u64> {
        self.inner.lock().0.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn total(&self) -> u64 {
        self.inner.lock().0.values().sum()
    }

    pub fn examples(&self) -> Vec<String> {
        self.inner.lock().1.clone()
    }
}

/// What the producer sent, and to whom: the truth the endpoints are checked against.
#[derive(Default)]
pub struct Ledger {
    /// turn_id → the text the producer sent (complete once it sent `end`).
    pub texts: DashMap<String, String>,
    /// (user, seq) → hash of the event and when the first device of the user got it.
    pub seen: DashMap<(u32, u64), (u64, std::time::Instant)>,
}

/// Ids the load tester makes carry their user, so an event's owner can be told from the event.
pub fn turn_id(run: &str, user: u32, n: u64) -> String {
    format!("lt{run}-{user}-{n}")
}

pub fn notification_title(user: u32) -> String {
    format!("lu{user}")
}

/// The user index a turn id or notification title names.
pub fn owner_of(body: &EventBody) -> Option<u32> {
    match body {
        EventBody::Notification { title, .. } => title.strip_prefix("lu")?.parse().ok(),
        EventBody::NotificationRead { .. } => None,
        other => other.turn_id()?.split('-').nth(1)?.parse().ok(),
    }
}

/// One endpoint's view, across its reconnects.
pub struct EndpointCheck {
    pub user: u32,
    pub epoch: Option<String>,
    /// The next seq expected.
    pub next: u64,
    /// Seqs skipped over that may still arrive late.
    missing: BTreeSet<u64>,
    /// Turns followed from their `turn.start`: next index and text so far.
    turns: HashMap<String, (u64, String)>,
    violations: Arc<Violations>,
    ledger: Arc<Ledger>,
}

/// What an event meant to the checker, for the caller's latency figures.
#[derive(Debug, Default, PartialEq)]
pub struct Seen {
    /// The first time this device saw this seq (false: a duplicate or foreign event).
    pub fresh: bool,
    /// Spread to the first device of the same user, when another got it first.
    pub spread: Option<std::time::Duration>,
}

/// Gaps larger than this are counted lost at once rather than remembered seq by seq.
const MAX_TRACKED_GAP: u64 = 100_000;

impl EndpointCheck {
    pub fn new(user: u32, violations: Arc<Violations>, ledger: Arc<Ledger>) -> Self {
        EndpointCheck {
            user,
            epoch: None,
            next: 0,
            missing: BTreeSet::new(),
            turns: HashMap::new(),
            violations,
            ledger,
        }
    }

    /// The resume point to ask for: the last seq received. Whatever is still missing then was
    /// skipped by the gateway and is counted lost at the resume.
    pub fn resume_point(&self) -> Option<(String, u64)> {
        Some((self.epoch.clone()?, self.next.checked_sub(1)?))
    }

    /// A `hello`. `asked` says whether a resume was asked for.
    pub fn on_hello(&mut self, epoch: &str, head: u64, resumed: bool, asked: bool) {
        if asked && !resumed {
            self.violations.record(Kind::ResumeRefused, 1, || {
                format!("user {} epoch {epoch} head {head}", self.user)
            });
        }
        // A new connection: what the last one skipped will not come any more.
        self.finish();
        if resumed && self.epoch.as_deref() == Some(epoch) {
            return;
        }
        self.epoch = Some(epoch.to_owned());
        self.next = head + 1;
        self.turns.clear();
    }

    /// One log event, with the hash of its raw text.
    pub fn on_event(&mut self, ev: &LogEvent, hash: u64, now: std::time::Instant) -> Seen {
        let user = self.user;
        if let Some(owner) = owner_of(&ev.body)
            && owner != user
        {
            self.violations.record(Kind::ForeignUser, 1, || {
                format!("user {user} got seq {} of user {owner}", ev.seq)
            });
            return Seen::default();
        }
        let seq = ev.seq;
        if seq < self.next {
            if self.missing.remove(&seq) {
                self.violations.record(Kind::Reordered, 1, || {
                    format!("user {user} seq {seq} after {}", self.next - 1)
                });
            } else {
                self.violations
                    .record(Kind::Duplicate, 1, || format!("user {user} seq {seq} again"));
                return Seen::default();
            }
        } else {
            if seq > self.next {
                let gap = seq - self.next;
                if gap > MAX_TRACKED_GAP {
                    self.violations.record(Kind::Lost, gap, || {
                        format!("user {user} jumped {} → {seq}", self.next)
                    });
                } else {
                    self.missing.extend(self.next..seq);
                }
            }
            self.next = seq + 1;
        }
        let spread = self.compare_devices(seq, hash, now);
        self.follow_turn(&ev.body);
        Seen { fresh: true, spread }
    }

    fn compare_devices(
        &self,
        seq: u64,
        hash: u64,
        now: std::time::Instant,
    ) -> Option<std::time::Duration> {
        let mut spread = None;
        let user = self.user;
        self.ledger
            .seen
            .entry((user, seq))
            .and_modify(|(h, first)| {
                if *h != hash {
                    self.violations
                        .record(Kind::DeviceMismatch, 1, || format!("user {user} seq {seq}"));
                }
                spread = Some(now.saturating_duration_since(*first));
            })
            .or_insert((hash, now));
        spread
    }

    fn follow_turn(&mut self, body: &EventBody) {
        let user = self.user;
        match body {
            EventBody::TurnStart { turn_id, .. } => {
                self.turns.insert(turn_id.clone(), (0, String::new()));
            }
            EventBody::TurnDelta { turn_id, index, text } => {
                if let Some((next, so_far)) = self.turns.get_mut(turn_id) {
                    if index != next {
                        self.violations.record(Kind::IndexOrder, 1, || {
                            format!("user {user} turn {turn_id} index {index}, expected {next}")
                        });
                        *next = index + 1;
                    } else {
                        *next += 1;
                    }
                    so_far.push_str(text);
                }
            }
            EventBody::TurnEnd { turn_id, status, .. } => {
                if let Some((_, text)) = self.turns.remove(turn_id)
                    && *status == TurnStatus::Completed
                {
                    let want = self.ledger.texts.get(turn_id).map(|t| t.clone());
                    if want.as_deref() != Some(text.as_str()) {
                        self.violations.record(Kind::WrongText, 1, || {
                            format!("user {user} turn {turn_id}: got {} bytes, producer sent {:?} bytes", text.len(), want.map(|w| w.len()))
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Ends the check: what is still missing is lost.
    pub fn finish(&mut self) {
        if !self.missing.is_empty() {
            let n = self.missing.len() as u64;
            let first = self.missing.first().copied();
            self.violations
                .record(Kind::Lost, n, || format!("user {} {n} seq(s) from {first:?}", self.user));
            self.missing.clear();
        }
    }

    /// Whether the endpoint has everything up to `head`.
    pub fn caught_up(&self, head: u64) -> bool {
        self.next > head && self.missing.is_empty()
    }
}

/// Hash of an event's raw text, for the cross-device comparison.
pub fn hash(raw: &str) -> u64 {
    let mut h = DefaultHasher::new();
    raw.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
