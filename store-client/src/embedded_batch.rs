//! Group commit of inbox additions for the embedded store: SQLite commits one writer at a
//! time, each commit an fsync, which would cap a notification storm at one fsync per
//! notification. Additions that arrive while a commit is under way are written together in the
//! next one (up to [`MAX_BATCH`]), and each caller is answered once its batch is durable.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::inbox::{self, InboxRecord};

/// Most additions in one commit.
const MAX_BATCH: usize = 256;
/// Additions waiting for the writer.
const QUEUE: usize = 4_096;

type Reply = oneshot::Sender<Result<(u64, u64), String>>;

/// The handle callers send through; the writer task ends when it is dropped (with the store).
pub struct Batcher {
    tx: mpsc::Sender<(InboxRecord, Reply)>,
}

impl Batcher {
    pub fn start(pool: SqlitePool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(pool, rx));
        Batcher { tx }
    }

    /// Adds a notification; returns the user's counts with it once it is committed.
    pub async fn add(&self, n: InboxRecord) -> Result<(u64, u64), StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable("the inbox writer has stopped".into());
        self.tx.send((n, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(StoreError::Unavailable)
    }
}

async fn write_batches(pool: SqlitePool, mut rx: mpsc::Receiver<(InboxRecord, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match commit(&pool, &batch).await {
            Ok(counts) => {
                for ((_, reply), c) in batch.drain(..).zip(counts) {
                    let _ = reply.send(Ok(c));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, additions = batch.len(), "inbox batch failed");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Writes a batch in one transaction of a few statements whatever its size (each statement is a
/// hop to SQLite's worker thread): per user, its counts row made and read before; one multi-row
/// insert naming the rows it added; per user, one update of its counts. Each addition is answered
/// with its user's counts as of it, as if they had been added one by one.
async fn commit(
    pool: &SqlitePool,
    batch: &[(InboxRecord, Reply)],
) -> Result<Vec<(u64, u64)>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut users: Vec<(&str, (i64, i64))> = Vec::new();
    for (n, _) in batch {
        if users.iter().all(|(u, _)| *u != n.user_id) {
            sqlx::query(inbox::RECOUNT).bind(&n.user_id).execute(&mut *tx).await?;
            let base = sqlx::query_as(inbox::COUNTS).bind(&n.user_id).fetch_one(&mut *tx).await?;
            users.push((&n.user_id, base));
        }
    }
    let mut insert =
        QueryBuilder::<Sqlite>::new(format!("INSERT INTO notifications ({}) ", inbox::COLUMNS));
    insert.push_values(batch, |mut row, (n, _)| {
        row.push_bind(&n.id)
            .push_bind(&n.user_id)
            .push_bind(&n.category)
            .push_bind(&n.priority)
            .push_bind(&n.title)
            .push_bind(&n.body)
            .push_bind(n.data.to_string())
            .push_bind(n.created_at_ms)
            .push_bind(&n.disposition)
            .push_bind(n.seen_at_ms)
            .push_bind(n.read_at_ms)
            .push_bind(n.archived_at_ms);
    });
    insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
    let mut added: HashSet<String> =
        insert.build_query_scalar::<String>().fetch_all(&mut *tx).await?.into_iter().collect();
    // Running counts per user; a user with an added row that is read or seen but not archived
    // (never made by the gateway) is recounted from the inbox instead.
    let mut running: HashMap<&str, (i64, i64)> = users.iter().copied().collect();
    let mut fresh: HashMap<&str, i64> = HashMap::new();
    let mut recount: HashSet<&str> = HashSet::new();
    let mut counts = Vec::with_capacity(batch.len());
    for (n, _) in batch {
        let user = n.user_id.as_str();
        // `remove`: an id twice in one batch is added once, by its first occurrence.
        if added.remove(&n.id) {
            match (n.archived_at_ms, n.read_at_ms, n.seen_at_ms) {
                (None, None, None) => {
                    let c = running.entry(user).or_default();
                    (c.0, c.1) = (c.0 + 1, c.1 + 1);
                    *fresh.entry(user).or_default() += 1;
                }
                (None, _, _) => {
                    recount.insert(user);
                }
                _ => {}
            }
        }
        counts.push(running.get(user).copied().unwrap_or_default());
    }
    for (user, k) in &fresh {
        sqlx::query(inbox::COUNT_MANY).bind(k).bind(user).execute(&mut *tx).await?;
    }
    for user in &recount {
        sqlx::query(inbox::FORGET_COUNTS).bind(user).execute(&mut *tx).await?;
        sqlx::query(inbox::RECOUNT).bind(user).execute(&mut *tx).await?;
        let now: (i64, i64) = sqlx::query_as(inbox::COUNTS).bind(user).fetch_one(&mut *tx).await?;
        for ((n, _), c) in batch.iter().zip(counts.iter_mut()) {
            if n.user_id == *user {
                *c = now;
            }
        }
    }
    tx.commit().await?;
    Ok(counts.into_iter().map(|(r, s)| (r.max(0) as u64, s.max(0) as u64)).collect())
}
