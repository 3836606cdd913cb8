//! Group commit of inbox additions for the embedded store: SQLite commits one writer at a
//! time, each commit an fsync, which would cap a notification storm at one fsync per
//! notification. Additions that arrive while a commit is under way are written together in the
//! next one (up to [`MAX_BATCH`]), and each caller is answered once its batch is durable.

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::inbox::InboxRecord;

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

/// Writes a batch in one transaction; each addition's counts, in order.
async fn commit(
    pool: &SqlitePool,
    batch: &[(InboxRecord, Reply)],
) -> Result<Vec<(u64, u64)>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut counts = Vec::with_capacity(batch.len());
    for (n, _) in batch {
        counts.push(crate::inbox::impl_inbox!(@statements tx, n));
    }
    tx.commit().await?;
    Ok(counts)
}
