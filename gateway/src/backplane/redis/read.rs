//! The replies of the reading scripts, parsed.

use std::sync::Arc;

use redis::Value;
use serde_json::Value as Json;
use wire::TurnStatus;

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::Scripts;
use super::subs::event_kind;
use crate::hub::Entry;

/// Runs `READ_TURN` for a turn of `user` (see the script for `owner` and `what`).
pub async fn turn(
    conn: &RedisConn,
    scripts: &Scripts,
    keys: &Keys,
    user: &str,
    turn_id: &str,
    owner: &str,
    what: &str,
) -> redis::RedisResult<Option<Value>> {
    let t = keys.turn(user, turn_id);
    let mut inv = scripts.read_turn.key(keys.log(user).meta);
    inv.key(t.state).key(t.text).key(t.traces).arg(owner).arg(what);
    inv.invoke_async(&mut conn.clone()).await
}

fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|e| e.to_string()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Nil => Ok(String::new()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

fn number<T: std::str::FromStr>(v: &Value, what: &str) -> Result<T, String> {
    text(v)?.parse().map_err(|_| format!("{what} is not a number: {v:?}"))
}

fn items(v: Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(format!("expected an array, got {other:?}")),
    }
}

pub fn status(s: &str) -> Result<TurnStatus, String> {
    Ok(match s {
        "streaming" => TurnStatus::Streaming,
        "completed" => TurnStatus::Completed,
        "cancelled" => TurnStatus::Cancelled,
        "failed" => TurnStatus::Failed,
        other => return Err(format!("unknown turn status {other:?}")),
    })
}

/// A turn as `READ_TURN` returns it.
pub struct TurnFields {
    pub user_id: String,
    pub conversation_id: String,
    pub status: TurnStatus,
    pub next_index: u64,
    pub chars: u64,
    pub created_ms: i64,
    pub meta: Option<Json>,
    pub truncated: bool,
    pub ended_ms: i64,
    /// The user's log head, read in the same step.
    pub head: u64,
    pub text: String,
    pub traces: Vec<String>,
}

impl TurnFields {
    pub fn parse(v: Value) -> Result<TurnFields, String> {
        let f = items(v)?;
        let [user, conv, st, next, chars, _start, created, meta, trunc, ended, head, txt, traces] =
            <[Value; 13]>::try_from(f).map_err(|f| format!("turn reply of {} fields", f.len()))?;
        let meta = text(&meta)?;
        Ok(TurnFields {
            user_id: text(&user)?,
            conversation_id: text(&conv)?,
            status: status(&text(&st)?)?,
            next_index: number(&next, "next")?,
            chars: number(&chars, "chars")?,
            created_ms: number(&created, "created")?,
            meta: if meta.is_empty() {
                None
            } else {
                Some(serde_json::from_str(&meta).map_err(|e| format!("turn meta: {e}"))?)
            },
            truncated: text(&trunc)? == "1",
            ended_ms: number(&ended, "ended")?,
            head: number(&head, "head")?,
            text: text(&txt)?,
            traces: items(traces)?.iter().map(text).collect::<Result<_, _>>()?,
        })
    }
}

/// What `READ_LOG` says of a user's log.
pub struct LogRead {
    pub epoch: Arc<str>,
    pub head: u64,
    /// The events asked for, when the log holds all of them.
    pub events: Option<Vec<Arc<Entry>>>,
}

impl LogRead {
    pub fn parse(v: Value) -> Result<LogRead, String> {
        let mut f = items(v)?.into_iter();
        let (Some(epoch), Some(head), Some(held)) = (f.next(), f.next(), f.next()) else {
            return Err("short log reply".into());
        };
        let epoch: Arc<str> = Arc::from(text(&epoch)?);
        let head = number(&head, "head")?;
        let held: i64 = number(&held, "held")?;
        let events = if held == 1 {
            let raw = match f.next() {
                Some(v) => items(v)?,
                None => Vec::new(),
            };
            let mut events = Vec::with_capacity(raw.len());
            for item in &raw {
                events.push(Arc::new(entry(&epoch, &text(item)?)?));
            }
            Some(events)
        } else {
            None
        };
        Ok(LogRead { epoch, head, events })
    }
}

/// A log item `<ms>|<event JSON>` as an entry of `epoch`.
fn entry(epoch: &Arc<str>, item: &str) -> Result<Entry, String> {
    let (_, json) = item.split_once('|').ok_or("log item without time")?;
    let seq = json
        .strip_prefix("{\"seq\":")
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .ok_or("log item without seq")?;
    let kind = event_kind(json).ok_or("log item of unknown type")?;
    Ok(Entry::with_json(epoch.clone(), seq, kind, json.to_owned()))
}
