//! The records of embedded mode: per user, a map of small records with their blobs, under one
//! lock that also covers appending the events (the hub's ring), so a record's change and its
//! events are one step, as the Redis script makes them.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::backplane::record::{Append, Expect, Keep, Outcome, Read, Record};

/// One record and its blobs.
#[derive(Debug, Default)]
pub struct Held {
    pub record: Record,
    pub text: String,
    pub items: Vec<String>,
    /// When it goes (`None`: kept).
    pub expires: Option<Instant>,
}

impl Held {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// Every record of one user.
#[derive(Debug, Default)]
pub struct UserRecords {
    map: HashMap<String, Held>,
}

impl UserRecords {
    /// The record named, if it lives.
    pub fn get(&self, name: &str) -> Option<&Held> {
        self.map.get(name).filter(|h| h.live(Instant::now()))
    }

    /// Checks `a.expect`; on success applies the change with `append_events` giving the seqs of
    /// the events it appended (the caller appends them to the log while this lock is held).
    pub fn apply(
        &mut self,
        a: Append,
        append_events: impl FnOnce(Vec<crate::backplane::Event>) -> (u64, u64),
    ) -> Outcome {
        let now = Instant::now();
        if a.expect == Expect::NoRecord {
            let (first, last) = append_events(a.events);
            return Outcome::Appended { first, last, version: 0 };
        }
        let current = self.map.get(&a.record).filter(|h| h.live(now)).map(|h| &h.record);
        let holds = match a.expect {
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current.is_some_and(|r| r.version == v),
            Expect::Field(k, v) => current.is_some_and(|r| r.get(k) == Some(v)),
            Expect::Any | Expect::NoRecord => true,
        };
        if !holds {
            return Outcome::Refused(current.cloned());
        }
        if current.is_none() {
            self.map.insert(a.record.clone(), Held::default());
        }
        let (first, last) = append_events(a.events);
        let Some(held) = self.map.get_mut(&a.record) else {
            return Outcome::Refused(None); // inserted just above
        };
        let made = held.record.version == 0;
        held.record.version += 1;
        if made {
            held.record.first_seq = first;
        }
        if last > 0 {
            held.record.last_seq = last;
        }
        for (k, v) in a.set {
            // Most updates change a field already there (a turn's next index): no new key.
            match held.record.fields.get_mut(k) {
                Some(slot) => *slot = v,
                None => _ = held.record.fields.insert(k.to_owned(), v),
            }
        }
        held.text.push_str(&a.text);
        held.items.extend(a.items);
        set_keep(held, a.keep, now);
        Outcome::Appended { first, last, version: held.record.version }
    }

    pub fn read(&self, name: &str, text: bool, items: bool, head: u64) -> Option<Read> {
        self.get(name).map(|h| Read {
            record: h.record.clone(),
            text: if text { h.text.clone() } else { String::new() },
            items: if items { h.items.clone() } else { Vec::new() },
            head,
        })
    }

    pub fn keep(&mut self, name: &str, keep: Keep) {
        if let Some(h) = self.map.get_mut(name) {
            set_keep(h, keep, Instant::now());
        }
    }

    /// Drops expired records; whether none is left.
    pub fn sweep(&mut self) -> bool {
        let now = Instant::now();
        self.map.retain(|_, h| h.live(now));
        self.map.is_empty()
    }
}

fn set_keep(h: &mut Held, keep: Keep, now: Instant) {
    match keep {
        Keep::Unchanged => {}
        Keep::For(d) => h.expires = Some(now + d),
        Keep::Forever => h.expires = None,
    }
}
