//! A turn's record and the rules of its lifecycle, as pure functions: what a batch of items
//! does to a turn (the events, the record's change, the text and traces kept), decided from the
//! record alone, so the same rule holds on every backend and the backend checks only that the
//! record did not change meanwhile.

use serde_json::Value;
use store_client::{FinalTurn, Trace, TurnRecord};
use wire::api::EventItem;
use wire::{EventBody, TurnStatus};

use super::{TurnError, chars};
use crate::backplane::{Append, Event, Expect, Keep, Record, Unavailable};

/// The record name of a turn in its user's slot.
pub fn record_name(turn_id: &str) -> String {
    format!("t:{turn_id}")
}

/// A turn as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRec {
    pub user_id: String,
    pub conversation_id: String,
    pub status: TurnStatus,
    pub next_index: u64,
    /// Unicode scalar values of every delta (the stored-text limit does not stop the count).
    pub chars: u64,
    /// Bytes of text kept, and whether it stopped growing at the limit.
    pub text_bytes: usize,
    pub truncated: bool,
    pub created_ms: i64,
    pub meta: Option<Value>,
    /// When it last took an event (turns idle too long are ended).
    pub last_ms: i64,
    pub ended_ms: i64,
    /// The record's version and its `turn.start`'s seq.
    pub version: u64,
    pub start_seq: u64,
    /// The producer's W3C `traceparent` at the turn's creation (tracing on), so the turn's later
    /// spans and its store write join that trace.
    pub trace: Option<String>,
}

fn corrupt(what: &str) -> Unavailable {
    tracing::error!(field = what, "a turn record is unreadable");
    Unavailable { code: "state_corrupt", message: "a turn's state is unreadable".into() }
}

pub fn status(s: &str) -> Option<TurnStatus> {
    Some(match s {
        "streaming" => TurnStatus::Streaming,
        "completed" => TurnStatus::Completed,
        "cancelled" => TurnStatus::Cancelled,
        "failed" => TurnStatus::Failed,
        _ => return None,
    })
}

impl TurnRec {
    pub fn new(user: &str, conv: &str, meta: Option<Value>, now_ms: i64) -> TurnRec {
        TurnRec {
            user_id: user.to_owned(),
            conversation_id: conv.to_owned(),
            status: TurnStatus::Streaming,
            next_index: 0,
            chars: 0,
            text_bytes: 0,
            truncated: false,
            created_ms: now_ms,
            meta,
            last_ms: now_ms,
            ended_ms: 0,
            version: 0,
            start_seq: 0,
            trace: None,
        }
    }

    pub fn parse(r: &Record) -> Result<TurnRec, Unavailable> {
        let s = |k: &str| r.get(k).ok_or_else(|| corrupt(k));
        let n = |k: &str| s(k)?.parse::<i64>().map_err(|_| corrupt(k));
        let meta = s("meta")?;
        Ok(TurnRec {
            user_id: s("user")?.to_owned(),
            conversation_id: s("conv")?.to_owned(),
            status: status(s("status")?).ok_or_else(|| corrupt("status"))?,
            next_index: n("next")? as u64,
            chars: n("chars")? as u64,
            text_bytes: n("tlen")? as usize,
            truncated: s("trunc")? == "1",
            created_ms: n("created")?,
            meta: if meta.is_empty() {
                None
            } else {
                Some(serde_json::from_str(meta).map_err(|_| corrupt("meta"))?)
            },
            last_ms: n("last")?,
            ended_ms: n("ended")?,
            version: r.version,
            start_seq: r.first_seq,
            trace: r.get("tp").map(str::to_owned),
        })
    }

    /// The fields a create writes.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let meta = self.meta.as_ref().map(crate::backplane::to_json).unwrap_or_default();
        let mut f = vec![
            ("user", self.user_id.clone()),
            ("conv", self.conversation_id.clone()),
            ("created", self.created_ms.to_string()),
            ("meta", meta),
        ];
        if let Some(tp) = &self.trace {
            f.push(("tp", tp.clone()));
        }
        f.extend(self.changing(None));
        f
    }

    /// The fields items change: those that differ from `was` (every one without it). A delta
    /// changes four of seven, and every field sent costs Redis work on every token.
    fn changing(&self, was: Option<&TurnRec>) -> Vec<(&'static str, String)> {
        // Compared as values, formatted only when sent (this runs for every token).
        let moved = |same: fn(&TurnRec, &TurnRec) -> bool| was.is_none_or(|w| !same(w, self));
        let mut f = Vec::new();
        if moved(|a, b| a.status == b.status) {
            f.push(("status", self.status.as_str().to_owned()));
        }
        if moved(|a, b| a.next_index == b.next_index) {
            f.push(("next", self.next_index.to_string()));
        }
        if moved(|a, b| a.chars == b.chars) {
            f.push(("chars", self.chars.to_string()));
        }
        if moved(|a, b| a.text_bytes == b.text_bytes) {
            f.push(("tlen", self.text_bytes.to_string()));
        }
        if moved(|a, b| a.truncated == b.truncated) {
            f.push(("trunc", u8::from(self.truncated).to_string()));
        }
        if moved(|a, b| a.last_ms == b.last_ms) {
            f.push(("last", self.last_ms.to_string()));
        }
        if moved(|a, b| a.ended_ms == b.ended_ms) {
            f.push(("ended", self.ended_ms.to_string()));
        }
        f
    }

    pub fn state(&self, turn_id: &str) -> wire::api::TurnState {
        wire::api::TurnState {
            turn_id: turn_id.to_owned(),
            user_id: self.user_id.clone(),
            conversation_id: self.conversation_id.clone(),
            status: self.status,
            next_index: self.next_index,
            text_len: self.chars,
        }
    }

    /// The finished record, with its text (cut to `max_text` bytes) and traces.
    pub fn finished(
        &self,
        turn_id: &str,
        text: String,
        traces: &[String],
        max_text: usize,
    ) -> Result<FinalTurn, Unavailable> {
        let traces = traces
            .iter()
            .map(|t| serde_json::from_str::<Trace>(t).map_err(|_| corrupt("trace")))
            .collect::<Result<Vec<_>, _>>()?;
        let turn = TurnRecord {
            turn_id: turn_id.to_owned(),
            conversation_id: self.conversation_id.clone(),
            user_id: self.user_id.clone(),
            status: self.status,
            text,
            truncated: self.truncated,
            created_at_ms: self.created_ms,
            completed_at_ms: if self.ended_ms > 0 {
                self.ended_ms
            } else {
                crate::backplane::now_ms()
            },
            meta: self.meta.clone().unwrap_or(Value::Null),
        };
        let mut f = FinalTurn { turn, traces, trace: self.trace.clone() };
        f.limit_text(max_text);
        Ok(f)
    }
}

/// Who ends a turn: a producer may end it `completed` or `failed`; a device cancels it; the
/// gateway fails it (idle, restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Producer,
    Gateway,
}

/// What a batch of items does to a turn.
#[derive(Debug)]
pub struct Plan {
    /// The append (its precondition: the record unchanged since `rec` was read).
    pub append: Append,
    /// The record after it.
    pub next: TurnRec,
    pub accepted: u64,
    /// Why item number `accepted` was refused (nothing after it was tried).
    pub refused: Option<TurnError>,
}

impl Plan {
    pub fn ends(&self) -> bool {
        self.next.status != TurnStatus::Streaming
    }
}

/// How long a streaming turn's record lives after its last push-back (an abandoned turn goes).
pub const STREAMING_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The rules of a turn: items apply in order to a streaming turn; a delta gets the next index
/// and grows the text up to `max_text` bytes (then it stops, flagged; the deltas still reach
/// the devices); a trace is kept for the stored turn; an end (a producer's `completed` or
/// `failed`, or the gateway's) ends it, and nothing follows an end.
pub fn plan(
    turn_id: &str,
    rec: &TurnRec,
    items: Vec<EventItem>,
    by: By,
    max_text: usize,
    now_ms: i64,
) -> Plan {
    let mut next = rec.clone();
    let mut append =
        Append::to(&rec.user_id, &record_name(turn_id), Expect::Version(rec.version), Vec::new());
    let (mut accepted, mut refused) = (0, None);
    for item in items {
        if next.status != TurnStatus::Streaming {
            refused = Some(TurnError::Ended { turn_id: turn_id.to_owned(), status: next.status });
            break;
        }
        let body = match item {
            EventItem::Delta(text) => {
                let index = next.next_index;
                next.next_index += 1;
                next.chars += chars(&text);
                let kept = grow(&mut next, &text, max_text);
                append.text.push_str(kept);
                EventBody::TurnDelta { turn_id: turn_id.to_owned(), index, text }
            }
            EventItem::Trace(trace) => {
                let record = serde_json::json!({"kind": trace.kind, "data": trace.data});
                append.items.push(record.to_string());
                EventBody::TurnTrace {
                    turn_id: turn_id.to_owned(),
                    kind: trace.kind,
                    data: trace.data,
                }
            }
            EventItem::End(e) => {
                let allowed = match by {
                    By::Producer => matches!(e.status, TurnStatus::Completed | TurnStatus::Failed),
                    By::Gateway => e.status != TurnStatus::Streaming,
                };
                if !allowed {
                    let msg = "\"end\".\"status\" must be \"completed\" or \"failed\"";
                    refused = Some(TurnError::Invalid(msg.into()));
                    break;
                }
                next.status = e.status;
                next.ended_ms = now_ms;
                let error =
                    (e.status == TurnStatus::Failed).then(|| e.error.unwrap_or(Value::Null));
                EventBody::TurnEnd { turn_id: turn_id.to_owned(), status: e.status, error }
            }
        };
        append.events.push(Event::of(&body));
        accepted += 1;
    }
    next.last_ms = now_ms;
    if only_an_end(&append, &next) {
        // An end alone depends on the status only: it is not refused by deltas racing it
        // from another node, and leaves what they wrote alone (so it is not diffed against
        // what this node saw).
        append.expect = Expect::Field("status", "streaming");
        append.set = next.changing(None);
        append.set.retain(|(k, _)| matches!(*k, "status" | "ended" | "last"));
    } else {
        append.set = next.changing(Some(rec));
    }
    // The expiry of a streaming turn is pushed back when it crosses 256 deltas (not on every
    // batch: this runs for every token); an ended turn's keep is the sink's to decide.
    if next.next_index / 256 != rec.next_index / 256 {
        append.keep = Keep::For(STREAMING_TTL);
    }
    Plan { append, next, accepted, refused }
}

fn only_an_end(a: &Append, next: &TurnRec) -> bool {
    a.events.len() == 1 && next.status != TurnStatus::Streaming
}

/// What of `piece` the kept text takes: all of it up to `max` bytes, then up to a character
/// boundary, then nothing.
fn grow<'a>(rec: &mut TurnRec, piece: &'a str, max: usize) -> &'a str {
    if rec.truncated {
        return "";
    }
    if rec.text_bytes + piece.len() <= max {
        rec.text_bytes += piece.len();
        return piece;
    }
    let mut cut = max - rec.text_bytes;
    while !piece.is_char_boundary(cut) {
        cut -= 1;
    }
    rec.text_bytes += cut;
    rec.truncated = true;
    &piece[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::api::EndItem;

    fn rec() -> TurnRec {
        let mut r = TurnRec::new("u", "c", None, 1);
        r.version = 3;
        r
    }

    #[test]
    fn deltas_take_indexes_and_the_text_stops_at_a_char_boundary() {
        let items = vec![EventItem::Delta("ab".into()), EventItem::Delta("é€".into())];
        let p = plan("t", &rec(), items, By::Producer, 4, 9);
        assert_eq!((p.accepted, p.next.next_index, p.next.chars), (2, 2, 4));
        assert_eq!(p.append.text, "abé");
        assert!(p.next.truncated);
        assert_eq!(p.append.expect, Expect::Version(3));
        assert!(p.append.events[1].json.contains("\"index\":1"));
        // Only what changed is written (the version check makes the rest as stored).
        let set: Vec<&str> = p.append.set.iter().map(|(k, _)| *k).collect();
        assert_eq!(set, ["next", "chars", "tlen", "trunc", "last"]);
    }

    #[test]
    fn nothing_follows_an_end_and_a_producer_cannot_cancel() {
        let end = |status| EventItem::End(EndItem { status, error: None });
        let p = plan(
            "t",
            &rec(),
            vec![end(TurnStatus::Completed), EventItem::Delta("x".into())],
            By::Producer,
            9,
            9,
        );
        assert_eq!(p.accepted, 1);
        assert!(matches!(p.refused, Some(TurnError::Ended { .. })));
        assert!(p.ends());
        let p = plan(
            "t",
            &rec(),
            vec![EventItem::Delta("x".into()), end(TurnStatus::Cancelled)],
            By::Producer,
            9,
            9,
        );
        assert_eq!(p.accepted, 1);
        assert!(matches!(p.refused, Some(TurnError::Invalid(_))));
        assert!(!p.ends());
        let p = plan("t", &rec(), vec![end(TurnStatus::Cancelled)], By::Gateway, 9, 9);
        assert_eq!((p.accepted, p.next.status), (1, TurnStatus::Cancelled));
    }

    #[test]
    fn a_record_round_trips() {
        let mut r = TurnRec::new("u", "c", Some(serde_json::json!({"m": 1})), 5);
        let mut record = Record { version: 1, first_seq: 7, last_seq: 7, ..Record::default() };
        for (k, v) in r.fields() {
            record.fields.insert(k.to_owned(), v);
        }
        r.version = 1;
        r.start_seq = 7;
        assert_eq!(TurnRec::parse(&record).unwrap(), r);
    }
}
