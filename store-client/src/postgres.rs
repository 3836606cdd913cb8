//! The PostgreSQL store: a pool of connections (statements prepared and cached per connection
//! by sqlx), migrated by the versioned migrations in `migrations/` on first contact.
//!
//! [`PostgresStore::open`] needs no server: the gateway starts (and streams) while the database
//! is down, and the schema is created and migrated the first time it answers. Until then every
//! call is a retryable [`StoreError::Unavailable`], which the outbox waits out.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor};
use tokio::sync::OnceCell;

use crate::StoreError;
use crate::sql::impl_turn_store;

pub struct PostgresStore {
    pool: PgPool,
    /// Tables in this schema (created if missing), when set.
    schema: Option<String>,
    /// Set once the schema exists and is migrated.
    migrated: OnceCell<()>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_in_schema(url, None).await
    }

    /// As [`connect`](Self::connect), with every table in `schema` (created if missing): lets
    /// tests run in parallel on one database, and deployments share one.
    pub async fn connect_in_schema(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let store = Self::open(url, schema)?;
        store.prepare().await?;
        Ok(store)
    }

    /// A store that connects (and migrates) when first used; fails only on a bad URL or schema.
    pub fn open(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let mut pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(3));
        if let Some(schema) = schema {
            if !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(StoreError::Invalid(format!("schema name {schema:?}")));
            }
            let search_path = format!("SET search_path TO {schema}");
            pool = pool.after_connect(move |conn, _| {
                // The name was checked above: letters, digits and underscores only.
                let sql = AssertSqlSafe(search_path.clone());
                Box::pin(async move {
                    conn.execute(sql).await?;
                    Ok(())
                })
            });
        }
        Ok(PostgresStore {
            pool: pool.connect_lazy_with(options),
            schema: schema.map(str::to_owned),
            migrated: OnceCell::new(),
        })
    }

    /// Creates the schema and runs the migrations, once; retried on the next call if the
    /// server could not be reached.
    async fn prepare(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| async {
                if let Some(schema) = &self.schema {
                    let sql = AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
                    self.pool.execute(sql).await?;
                }
                sqlx::migrate!("./migrations").run(&self.pool).await.map_err(|e| match e {
                    sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
                    other => StoreError::Corrupt(format!("migration: {other}")),
                })
            })
            .await
            .map(|_| ())
    }
}

impl_turn_store!(PostgresStore, sqlx::postgres::PgRow, "BEGIN");
crate::push::impl_push_queue!(PostgresStore);
crate::tasks::impl_tasks!(PostgresStore, sqlx::postgres::PgRow, "BEGIN");
crate::inbox::impl_inbox!(PostgresStore, sqlx::postgres::PgRow, "BEGIN");
