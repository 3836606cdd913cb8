//! The replies of the reading scripts, parsed.

use std::sync::Arc;

use crate::backplane::record::{Outcome, Read, from_pairs};
use crate::hub::{Entry, kind_of};
use redis::Value;

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

/// What `READ_RECORD` returns: `None` when the record is absent.
pub fn record(v: Value) -> Result<Option<Read>, String> {
    let [head, fields, txt, list] = <[Value; 4]>::try_from(items(v)?)
        .map_err(|f| format!("record reply of {} parts", f.len()))?;
    let fields = items(fields)?.iter().map(text).collect::<Result<Vec<_>, _>>()?;
    let Some(record) = from_pairs(fields)? else { return Ok(None) };
    Ok(Some(Read {
        record,
        text: text(&txt)?,
        items: items(list)?.iter().map(text).collect::<Result<_, _>>()?,
        head: number(&head, "head")?,
    }))
}

/// What `APPEND_IF` returns.
pub fn outcome(v: Value) -> Result<Outcome, String> {
    let f = items(v)?;
    match f.first().map(|v| number::<i64>(v, "outcome")).transpose()? {
        Some(1) if f.len() == 4 => Ok(Outcome::Appended {
            first: number(&f[1], "first")?,
            last: number(&f[2], "last")?,
            version: number(&f[3], "version")?,
        }),
        Some(0) if f.len() == 2 => {
            let fields = items(f[1].clone())?.iter().map(text).collect::<Result<Vec<_>, _>>()?;
            Ok(Outcome::Refused(from_pairs(fields)?))
        }
        Some(-1) => Err(format!("the append failed in Redis: {:?}", f.get(1))),
        _ => Err(format!("append reply {f:?}")),
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
pub fn entry(epoch: &Arc<str>, item: &str) -> Result<Entry, String> {
    let (_, json) = item.split_once('|').ok_or("log item without time")?;
    let seq = json
        .strip_prefix("{\"seq\":")
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .ok_or("log item without seq")?;
    let kind = kind_of(json).ok_or("log item without a type")?;
    Ok(Entry::with_json(epoch.clone(), seq, kind, json.to_owned()))
}
