//! The embedded store: SQLite in `<data_dir>/turns.db`, no server. WAL with full sync: a turn
//! acknowledged as stored survives a crash or power loss.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::sql::impl_turn_store;

pub struct EmbeddedStore {
    pool: SqlitePool,
    /// Inbox additions, committed in groups.
    batch: crate::embedded_batch::Batcher,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, and migrates it.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        let options = file_options(dir, "turns.db")?;
        let pool = pool(4).connect_with(options).await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Corrupt(format!("migration: {e}")))?;
        let batch = crate::embedded_batch::Batcher::start(pool.clone());
        Ok(EmbeddedStore { pool, batch })
    }

    async fn add_batched(&self, n: crate::InboxRecord) -> Result<(u64, u64), StoreError> {
        self.batch.add(n).await
    }
}

/// Pool settings for a SQLite file. A connection handed back still inside a transaction (its
/// rollback failed: a full disk, an I/O error) is closed, not reused, so one bad moment does
/// not break every later write; the pool opens a fresh one when it is next needed.
pub(crate) fn pool(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new().max_connections(max).after_release(|conn, _| {
        Box::pin(async move {
            // The ping runs after any rollback queued by a dropped transaction.
            conn.ping().await?;
            Ok(!conn.is_in_transaction())
        })
    })
}

/// A SQLite file `name` in `dir` (both created if missing): WAL, a write synced before it
/// returns, a lock waited for rather than refused.
pub(crate) fn file_options(dir: &Path, name: &str) -> Result<SqliteConnectOptions, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(name);
    Ok(SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5)))
}

impl EmbeddedStore {
    /// Nothing to wait for: the file was opened and migrated in [`open`](Self::open).
    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl_turn_store!(EmbeddedStore, sqlx::sqlite::SqliteRow, "BEGIN IMMEDIATE");
crate::push::impl_push_queue!(EmbeddedStore);
crate::tasks::impl_tasks!(EmbeddedStore, sqlx::sqlite::SqliteRow, "BEGIN IMMEDIATE");
crate::inbox::impl_inbox!(EmbeddedStore, sqlx::sqlite::SqliteRow, "BEGIN IMMEDIATE", batched);
