//! Appends go to Redis in batches: one script call carries every append waiting when the
//! previous call left (up to [`MAX_BATCH`]), so at load the fixed cost of a call (its round
//! trip, the script's start, the syscalls on both sides) is paid once for many appends, and
//! Redis writes the batch's messages to each subscriber in one go.
//!
//! Calls in flight ([`IN_FLIGHT`]) gather only what arrives during a round trip: about two
//! appends a call at a paced 5,000 a second, three at 10,000. A batch may also *linger*, as
//! Kafka's `linger.ms`: when appends arrive faster than one per linger (the previous came less
//! than the linger ago), it waits up to the linger after its first append for more; a lone
//! append (the first after a quiet spell) still leaves at once. It is off by default: at
//! 20,000 deliveries a second a linger of 1 ms took a third of the calls and cut redis-server
//! CPU per event by 14 %, but added 1.5 ms to the median delivery (tokio's timer ticks in
//! milliseconds) and pushed p99 past 5 ms: a trade for a deployment whose Redis is short of
//! CPU, not for every one (docs/benchmarks.md, ninth sitting).
//!
//! On a cluster a script touches one slot, so a batch goes as one call per user (a user's keys
//! share a slot), the calls of one batch in flight together.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::Scripts;
use super::{RedisSettings, corrupt, keep_arg, read, unavailable};
use crate::backplane::Unavailable;
use crate::backplane::record::{Append, Expect, Outcome};
use crate::metrics::Metrics;

/// Most appends in one script call.
const MAX_BATCH: usize = 64;
/// Bytes of events and text past which a call takes no more appends (one big append still
/// goes alone): a call is one atomic step in Redis, and every append in it shares its reply
/// timeout.
const MAX_CALL_BYTES: usize = 256 * 1024;
/// Script calls (batches) under way at once; more appends wait and go in the next batch.
const IN_FLIGHT: usize = 2;
/// Appends waiting for a batch.
const QUEUE: usize = 4_096;

type Reply = oneshot::Sender<Result<Outcome, Unavailable>>;

struct Pending {
    append: Append,
    reply: Reply,
    since: Instant,
}

/// The handle appends go through; its task ends when it is dropped (with the backplane),
/// once the calls under way are answered.
pub struct Appender {
    tx: mpsc::Sender<Pending>,
}

/// What a batch call needs, shared by the calls.
struct Ctx {
    conn: RedisConn,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
    /// The batch's leading arguments: publish command, `<kept>:<bytes>`, age ms.
    lead: [String; 3],
    metrics: std::sync::Arc<Metrics>,
    /// How long a batch may wait for more appends (zero: never).
    linger: Duration,
}

impl Appender {
    pub fn start(
        conn: RedisConn,
        keys: Keys,
        scripts: std::sync::Arc<Scripts>,
        settings: &RedisSettings,
        metrics: std::sync::Arc<Metrics>,
    ) -> Self {
        let lead = [
            conn.publish_command().to_owned(),
            format!("{}:{}", settings.keep, settings.max_log_bytes),
            settings.age.as_millis().to_string(),
        ];
        let (tx, rx) = mpsc::channel(QUEUE);
        let linger = settings.linger;
        tokio::spawn(run(Ctx { conn, keys, scripts, lead, metrics, linger }, rx));
        Appender { tx }
    }

    pub async fn append(&self, append: Append) -> Result<Outcome, Unavailable> {
        let (reply, answer) = oneshot::channel();
        let gone = || Unavailable {
            code: "redis_unavailable",
            message: "the gateway is shutting down".into(),
        };
        let pending = Pending { append, reply, since: Instant::now() };
        self.tx.send(pending).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(ctx: Ctx, mut rx: mpsc::Receiver<Pending>) {
    let mut flying = FuturesUnordered::new();
    let mut forming: Option<Batch> = None;
    let mut last_arrival: Option<Instant> = None;
    loop {
        let room = flying.len() < IN_FLIGHT;
        if room && forming.as_ref().is_some_and(|b| b.full() || Instant::now() >= b.due) {
            flying.push(ctx.send(forming.take().map(|b| b.appends).unwrap_or_default()));
            continue;
        }
        let wants = forming.as_ref().map_or(room, |b| !b.full());
        let due = forming.as_ref().map(|b| b.due);
        tokio::select! {
            got = rx.recv(), if wants => {
                let Some(p) = got else { break };
                let quick = last_arrival.is_some_and(|l| p.since.duration_since(l) < ctx.linger);
                last_arrival = Some(p.since);
                match forming.as_mut() {
                    Some(b) => b.push(p, &mut rx),
                    None => {
                        let b = Batch::start(p, &mut rx, ctx.linger);
                        if quick { forming = Some(b) } else { flying.push(ctx.send(b.appends)) }
                    }
                }
            }
            () = sleep_until(due), if room && due.is_some() => {}
            Some(()) = flying.next(), if !flying.is_empty() => {}
        }
    }
    if let Some(b) = forming {
        flying.push(ctx.send(b.appends));
    }
    while flying.next().await.is_some() {}
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due.into()).await;
    }
}

/// A batch being formed: the appends, their bytes, and when it leaves at the latest.
struct Batch {
    appends: Vec<Pending>,
    bytes: usize,
    due: Instant,
}

impl Batch {
    /// `first` and the appends waiting behind it, up to [`MAX_BATCH`] and [`MAX_CALL_BYTES`].
    fn start(first: Pending, rx: &mut mpsc::Receiver<Pending>, linger: Duration) -> Batch {
        let due = first.since + linger;
        let mut b = Batch { appends: Vec::new(), bytes: 0, due };
        b.push(first, rx);
        b
    }

    /// Takes `p`, then what waits, while the batch is not full.
    fn push(&mut self, p: Pending, rx: &mut mpsc::Receiver<Pending>) {
        self.bytes += weight(&p.append);
        self.appends.push(p);
        while !self.full() {
            let Ok(next) = rx.try_recv() else { break };
            self.bytes += weight(&next.append);
            self.appends.push(next);
        }
    }

    fn full(&self) -> bool {
        self.appends.len() >= MAX_BATCH || self.bytes >= MAX_CALL_BYTES
    }
}

fn weight(a: &Append) -> usize {
    a.text.len() + a.events.iter().map(|e| e.json.len()).sum::<usize>()
}

impl Ctx {
    /// Sends a batch (one call, or one per user on a cluster) and answers its appends.
    async fn send(&self, batch: Vec<Pending>) {
        if !self.conn.is_cluster() {
            return self.call(batch).await;
        }
        let mut by_user: Vec<Vec<Pending>> = Vec::new();
        for p in batch {
            match by_user.iter_mut().find(|b| b[0].append.user == p.append.user) {
                Some(b) => b.push(p),
                None => by_user.push(vec![p]),
            }
        }
        futures_util::future::join_all(by_user.into_iter().map(|b| self.call(b))).await;
    }

    async fn call(&self, batch: Vec<Pending>) {
        self.metrics.redis_batches.increment(1);
        let cmd = self.command(&batch);
        let failed = match self.query(&cmd).await {
            Ok(Value::Array(replies)) if replies.len() == batch.len() => {
                return self.answer(batch, replies);
            }
            Ok(other) => corrupt(format!("batch reply {other:?}")),
            Err(e) => unavailable(e),
        };
        for p in batch {
            let _ = p.reply.send(Err(failed.clone()));
        }
    }

    /// Runs the batch's `EVALSHA`; a Redis that lost its scripts (restarted, flushed) gets the
    /// script loaded again and the call once more, as `ScriptInvocation` does.
    async fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.scripts.append.load_async(&mut conn).await?;
                cmd.query_async(&mut conn).await
            }
            other => other,
        }
    }

    /// Each append of a batch gets its own reply.
    fn answer(&self, batch: Vec<Pending>, replies: Vec<Value>) {
        for (p, reply) in batch.into_iter().zip(replies) {
            let outcome = read::outcome(reply).map_err(corrupt);
            if outcome.is_ok() {
                self.metrics.append.record(p.since.elapsed().as_secs_f64());
            }
            let _ = p.reply.send(outcome);
        }
    }

    /// The batch's `EVALSHA` (see `append.lua` for its keys and arguments), written straight
    /// into one command buffer: a `ScriptInvocation` keeps every argument in an allocation of
    /// its own, then copies them all into a command, some thirty allocations per append.
    fn command(&self, batch: &[Pending]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.append.get_hash()).arg(batch.len() * 5);
        let mut buf = String::with_capacity(128);
        for p in batch {
            let a = &p.append;
            self.keys.write_append_keys(&mut cmd, &mut buf, &a.user, &a.record);
        }
        for a in &self.lead {
            cmd.arg(a);
        }
        for p in batch {
            self.keys.write_channel(&mut cmd, &mut buf, &p.append.user);
            args(&mut cmd, &mut buf, &p.append);
        }
        cmd
    }
}

/// An append's arguments after the batch's keys, leading arguments and its channel.
fn args(cmd: &mut redis::Cmd, buf: &mut String, a: &Append) {
    use std::fmt::Write;
    buf.clear();
    let _ = write!(buf, "{:016x}", rand::random::<u64>());
    cmd.arg(buf.as_str());
    match &a.expect {
        Expect::NoRecord => cmd.arg(""),
        Expect::Any => cmd.arg("*"),
        Expect::Absent => cmd.arg("-"),
        Expect::Version(v) => cmd.arg(*v),
        Expect::Field(k, v) => cmd.arg(format!("={k}\n{v}")),
    };
    cmd.arg(keep_arg(a.keep)).arg(a.set.len()).arg(&a.text);
    cmd.arg(a.items.len()).arg(a.events.len());
    for (k, v) in &a.set {
        cmd.arg(*k).arg(v);
    }
    for item in &a.items {
        cmd.arg(item);
    }
    // Without the opening brace: the script puts `{"seq":N,` in front.
    for e in &a.events {
        cmd.arg(e.json.get(1..).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::record::Event;

    fn pending(bytes: usize) -> Pending {
        let event = Event { kind: "x", json: "x".repeat(bytes) };
        let append = Append::events("u", vec![event]);
        Pending { append, reply: oneshot::channel().0, since: Instant::now() }
    }

    #[test]
    fn a_call_takes_what_waits_up_to_its_caps() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        for _ in 0..MAX_BATCH + 6 {
            tx.try_send(pending(10)).unwrap();
        }
        let first = rx.try_recv().unwrap();
        assert_eq!(Batch::start(first, &mut rx, Duration::ZERO).appends.len(), MAX_BATCH);
        let first = rx.try_recv().unwrap();
        assert_eq!(
            Batch::start(first, &mut rx, Duration::ZERO).appends.len(),
            6,
            "the rest, not waiting for more"
        );
        // Past the bytes, no more appends join (the one that crosses the line still does).
        for bytes in [MAX_CALL_BYTES / 2, MAX_CALL_BYTES / 2, 10, 10] {
            tx.try_send(pending(bytes)).unwrap();
        }
        let first = rx.try_recv().unwrap();
        assert_eq!(Batch::start(first, &mut rx, Duration::ZERO).appends.len(), 2);
        let first = rx.try_recv().unwrap();
        assert_eq!(Batch::start(first, &mut rx, Duration::ZERO).appends.len(), 2);
        // One append bigger than the cap goes alone.
        tx.try_send(pending(MAX_CALL_BYTES * 2)).unwrap();
        tx.try_send(pending(10)).unwrap();
        let first = rx.try_recv().unwrap();
        assert_eq!(Batch::start(first, &mut rx, Duration::ZERO).appends.len(), 1);
    }
}
