//! What the domain asks of a backplane, as data: append a batch of events to a user's log *if*
//! a precondition on a small state record holds, and change that record in the same atomic
//! step. The backplane knows nothing of turns or notifications; the rules that build an
//! [`Append`] live in [`crate::domain`], once, whatever the backend.

use std::collections::BTreeMap;
use std::time::Duration;

/// A small state record in a user's slot (a turn, a dedup key), with two blobs beside it that
/// grow by appending: a text and a list of strings (a turn's text and traces). Kept small so
/// checking a precondition costs one read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Bumped by every change; what [`Expect::Version`] compares.
    pub version: u64,
    /// The seq of the first event appended with the change that made the record (0: none).
    pub first_seq: u64,
    /// The seq of the last event appended with a change of it (0: none).
    pub last_seq: u64,
    pub fields: BTreeMap<String, String>,
}

impl Record {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// The precondition of an [`Append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Events only: no record is read or written.
    NoRecord,
    /// The record must not exist (a create, a dedup key).
    Absent,
    /// The record must be at this version (it exists).
    Version(u64),
    /// Whatever the record's state (it is created when absent).
    Any,
    /// The record exists and this field has this value: a change that does not depend on the
    /// rest (an end depends on the status alone), so concurrent changes of the rest do not
    /// refuse it.
    Field(&'static str, &'static str),
}

/// How long the record (and its blobs) lives after this change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// As before (a new record, or a blob made now, takes the record's).
    Unchanged,
    /// Until this long from now.
    For(Duration),
    /// Until told otherwise.
    Forever,
}

/// One event to append: its `type` and its JSON without `seq` (`{"type":…}`); the backplane
/// gives it the next seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: &'static str,
    pub json: String,
}

impl Event {
    pub fn of(body: &wire::EventBody) -> Event {
        Event { kind: body.kind(), json: crate::backplane::to_json(body) }
    }
}

/// One atomic step in a user's slot.
#[derive(Debug, Clone)]
pub struct Append {
    pub user: String,
    /// The record's name within the user's slot (`t:<turn id>`, `dd:<key>`).
    pub record: String,
    pub expect: Expect,
    /// Fields written (others are left as they are).
    pub set: Vec<(&'static str, String)>,
    /// Appended to the record's text blob.
    pub text: String,
    /// Pushed onto the record's list blob.
    pub items: Vec<String>,
    pub keep: Keep,
    pub events: Vec<Event>,
}

impl Append {
    /// Events only, under no condition.
    pub fn events(user: &str, events: Vec<Event>) -> Append {
        Append::to(user, "", Expect::NoRecord, events)
    }

    pub fn to(user: &str, record: &str, expect: Expect, events: Vec<Event>) -> Append {
        Append {
            user: user.to_owned(),
            record: record.to_owned(),
            expect,
            set: Vec::new(),
            text: String::new(),
            items: Vec::new(),
            keep: Keep::Unchanged,
            events,
        }
    }
}

/// What became of an [`Append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the events got seqs `first..=last` (0 and 0: none), the record is at `version`.
    Appended { first: u64, last: u64, version: u64 },
    /// The precondition failed; nothing changed. The record as it is (`None`: absent), so the
    /// caller can decide again without another read.
    Refused(Option<Record>),
}

/// Which blobs a [`read`](super::Backplane::read) returns with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Blobs {
    pub text: bool,
    pub items: bool,
}

/// A record read, with the blobs asked for and the user's log head read in the same step (what
/// a snapshot's `as_of_seq` is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub record: Record,
    pub text: String,
    pub items: Vec<String>,
    pub head: u64,
}

/// The record fields a backend keeps for itself, not to be set by an [`Append`].
pub const RESERVED: [&str; 3] = ["v", "seq0", "seq"];

/// A record's fields as a flat `[k1, v1, k2, v2, …]` reply (Redis `HGETALL`), its reserved
/// fields taken out. `None` when empty (absent).
pub fn from_pairs(pairs: Vec<String>) -> Result<Option<Record>, String> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut r = Record::default();
    let mut it = pairs.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let num = || v.parse::<u64>().map_err(|_| format!("record field {k} = {v:?}"));
        match k.as_str() {
            "v" => r.version = num()?,
            "seq0" => r.first_seq = num()?,
            "seq" => r.last_seq = num()?,
            _ => {
                r.fields.insert(k, v);
            }
        }
    }
    Ok(Some(r))
}
