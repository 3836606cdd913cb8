//! The Lua scripts: each is one atomic step in one user's slot (or the outbox's). None holds a
//! domain rule: the appending script takes its conditions and changes as data.
//!
//! [`append.lua`](./append.lua) appends a batch: for each append, the condition on a record is
//! checked, the events get the next seqs, are kept in the user's log (capped by count, bytes
//! and age, the whole log expiring when idle) and published as one message
//! `<epoch>\n<item>\n<item>…` (an item is `<ms>|<event JSON with seq>`, as the log keeps it) on
//! the user's channel, in one step, so the order nodes receive events in is the order of their
//! seqs, and no node sees a gap. A log that is gone (expired, Redis restarted or flushed)
//! starts a new epoch with the candidate the caller gave. Then the record is changed.
//!
//! Its arguments: ARGV[1] `PUBLISH` or `SPUBLISH` (cluster), ARGV[2] `<events kept>:<bytes
//! kept>`, ARGV[3] their age limit in ms. Then per append, five KEYS: log (LIST), meta (HASH
//! `epoch`, `head`, `bytes`, `exp`), record (HASH), its text (STRING), its items (LIST); and
//! the ARGV: channel, epoch candidate, expect (`` no record | `*` any | `-` absent |
//! `=<field>\n<value>` that field has that value | a version), keep (`` unchanged | `0`
//! forever | ms), n fields set, text appended, m items pushed, k events, then n field/value
//! pairs, m items, and the k events (their JSON without seq and without the opening brace).
//! → per append: {1, first seq, last seq, version} | {0, the record's fields (empty: absent)}
//! | {-1, error}. A blob made now takes the record's expiry, so nothing of a record outlives it.

use redis::Script;

/// Reads a record. KEYS[1] log meta, KEYS[2] record, KEYS[3] text, KEYS[4] items; ARGV[1]
/// `1`: with the text, ARGV[2] `1`: with the items. → {head, fields, text, items}: the head
/// read in the same step (a snapshot's `as_of_seq`); no fields: absent.
const READ_RECORD: &str = r#"
local head = redis.call('HGET', KEYS[1], 'head') or '0'
local fields = redis.call('HGETALL', KEYS[2])
local text, items = '', {}
if #fields > 0 and ARGV[1] == '1' then text = redis.call('GET', KEYS[3]) or '' end
if #fields > 0 and ARGV[2] == '1' then items = redis.call('LRANGE', KEYS[4], 0, -1) end
return {head, fields, text, items}
"#;

/// Sets how long a record and its blobs live. KEYS record, text, items; ARGV[1] `0`: forever,
/// else ms.
const KEEP: &str = r#"
for i = 1, #KEYS do
  if ARGV[1] == '0' then redis.call('PERSIST', KEYS[i]) else redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
"#;

/// The log's epoch and head, and the events `after < seq <= upto` if the log holds them all.
/// KEYS[1] log, KEYS[2] meta; ARGV[1] epoch candidate (a missing log starts a life with it),
/// ARGV[2] age limit ms, ARGV[3] the epoch asked for (empty: none), ARGV[4] after, ARGV[5]
/// upto (0: the head), ARGV[6] events kept (the log is trimmed lazily: only the newest this
/// many count). → {epoch, head, 1 held | 0 not, entries}
const READ_LOG: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'head', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local head = tonumber(redis.call('HGET', KEYS[2], 'head'))
if ARGV[3] ~= epoch then return {epoch, head, 0} end
local after, upto = tonumber(ARGV[4]), tonumber(ARGV[5])
-- `upto` 0 or past the head reads up to the head (a reader catching up asks for a chunk).
if upto == 0 or upto > head then upto = head end
if after > upto then return {epoch, head, 0} end
if after == upto then return {epoch, head, 1, {}} end
local first = math.max(head - redis.call('LLEN', KEYS[1]) + 1, head - tonumber(ARGV[6]) + 1)
if after + 1 < first then return {epoch, head, 0} end
local base = head - redis.call('LLEN', KEYS[1]) + 1
local items = redis.call('LRANGE', KEYS[1], after + 1 - base, upto - base)
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
local at = tonumber(string.match(items[1], '^(%d+)|'))
if at and at < cutoff then return {epoch, head, 0} end
return {epoch, head, 1, items}
"#;

/// Keeps the log of a user with endpoints alive. KEYS log, meta; ARGV[1] age ms.
const TOUCH: &str = r#"
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1
"#;

/// The outbox scripts all take the same KEYS: due, age, who, tries, aside (see `keys.rs`).
///
/// Records that a turn is about to end: written before the end, so a crash between the end and
/// anything after it still leaves the turn on its way to the store.
/// ARGV[1] turn id, ARGV[2] user, ARGV[3] first due (ms), ARGV[4] now (ms).
const OUTBOX_ADD: &str = r#"
redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1])
redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2])
return 1
"#;

/// Claims due entries, leasing each. ARGV[1] now, ARGV[2] lease ms, ARGV[3] max.
/// → {id, user, tries, enqueued, ...}
const OUTBOX_CLAIM: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[4], id) or '0'
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], id) or '0'
end
return out
"#;

/// Removes an entry (stored, or dropped). ARGV[1] id.
const OUTBOX_DONE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"#;

/// Tries an entry again later. ARGV[1] id, ARGV[2] due ms, ARGV[3] attempts.
const OUTBOX_RETRY: &str = r#"
if redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
end
return 1
"#;

/// Sets an entry aside for an operator. ARGV[1] id, ARGV[2] the reason.
const OUTBOX_ASIDE: &str = r#"
local user = redis.call('HGET', KEYS[3], ARGV[1]) or ''
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], cjson.encode({user = user, error = ARGV[2]}))
return 1
"#;

/// Puts an entry set aside back in line, due now. ARGV[1] id, ARGV[2] its user, ARGV[3] now.
const OUTBOX_UNASIDE: &str = r#"
if redis.call('HDEL', KEYS[5], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"#;

/// Depth, oldest entry, entries set aside.
const OUTBOX_STATS: &str = r#"
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {redis.call('ZCARD', KEYS[1]), oldest[2] or '', redis.call('HLEN', KEYS[5])}
"#;

/// Every script, called by hash (sent in full when Redis does not know it: after a restart).
pub struct Scripts {
    pub append: Script,
    pub read_record: Script,
    pub keep: Script,
    pub read_log: Script,
    pub touch: Script,
    pub outbox_add: Script,
    pub outbox_claim: Script,
    pub outbox_done: Script,
    pub outbox_retry: Script,
    pub outbox_aside: Script,
    pub outbox_unaside: Script,
    pub outbox_stats: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            append: Script::new(include_str!("append.lua")),
            read_record: Script::new(READ_RECORD),
            keep: Script::new(KEEP),
            read_log: Script::new(READ_LOG),
            touch: Script::new(TOUCH),
            outbox_add: Script::new(OUTBOX_ADD),
            outbox_claim: Script::new(OUTBOX_CLAIM),
            outbox_done: Script::new(OUTBOX_DONE),
            outbox_retry: Script::new(OUTBOX_RETRY),
            outbox_aside: Script::new(OUTBOX_ASIDE),
            outbox_unaside: Script::new(OUTBOX_UNASIDE),
            outbox_stats: Script::new(OUTBOX_STATS),
        }
    }
}

impl Scripts {
    /// Loads every script into Redis (every master of a cluster), so the first calls of a busy
    /// start do not each fail with NOSCRIPT and send the script again.
    pub async fn load(&self, conn: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<()> {
        for s in [
            &self.append,
            &self.read_record,
            &self.keep,
            &self.read_log,
            &self.touch,
            &self.outbox_add,
            &self.outbox_claim,
            &self.outbox_done,
            &self.outbox_retry,
            &self.outbox_aside,
            &self.outbox_unaside,
            &self.outbox_stats,
        ] {
            s.prepare_invoke().load_async(conn).await?;
        }
        Ok(())
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
