//! The PostgreSQL store: a pool of connections (statements prepared and cached per connection
//! by sqlx), migrated at start-up by the versioned migrations in `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor};

use crate::StoreError;
use crate::sql::impl_turn_store;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_in_schema(url, None).await
    }

    /// As [`connect`](Self::connect), with every table in `schema` (created if missing): lets
    /// tests run in parallel on one database, and deployments share one.
    pub async fn connect_in_schema(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let mut pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(3));
        if let Some(schema) = schema {
            if !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(StoreError::Invalid(format!("schema name {schema:?}")));
            }
            let setup =
                PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
            // The name was checked above: letters, digits and underscores only.
            setup.execute(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).await?;
            setup.close().await;
            let search_path = format!("SET search_path TO {schema}");
            pool = pool.after_connect(move |conn, _| {
                let sql = AssertSqlSafe(search_path.clone());
                Box::pin(async move {
                    conn.execute(sql).await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Corrupt(format!("migration: {e}")))?;
        Ok(PostgresStore { pool })
    }
}

impl_turn_store!(PostgresStore, sqlx::postgres::PgRow, "BEGIN");
