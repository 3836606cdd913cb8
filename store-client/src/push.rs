//! The push outbox in the store: webhook calls waiting to be made, claimed with a lease so
//! two nodes do not make one call at once, retried until final, and kept across restarts.
//! Which pushed notifications a mark should retract is found here too.

use async_trait::async_trait;

use crate::StoreError;

/// One webhook call.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PushEntry {
    /// The Idempotency-Key, the same on every retry.
    pub key: String,
    pub user_id: String,
    /// `notification` or `retract`.
    pub kind: String,
    pub notification_id: Option<String>,
    /// The JSON body, exactly as sent (the signature covers it).
    pub body: String,
    pub attempts: u32,
    pub created_at_ms: i64,
}

/// What became of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushResult {
    Sent,
    /// Final without success (4xx other than 408 and 429, or past the retry horizon).
    Failed,
}

#[async_trait]
pub trait PushQueue: Send + Sync {
    /// Queues a call, due now (a repeated key changes nothing).
    async fn push_enqueue(&self, e: &PushEntry) -> Result<(), StoreError>;

    /// Takes up to `max` due calls, each leased until `now_ms + lease_ms`.
    async fn push_claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        max: u32,
    ) -> Result<Vec<PushEntry>, StoreError>;

    async fn push_done(&self, key: &str, result: PushResult) -> Result<(), StoreError>;

    async fn push_retry(&self, key: &str, attempts: u32, due_at_ms: i64) -> Result<(), StoreError>;

    /// Notifications of `user_id` that were pushed (or are on their way), not yet retracted,
    /// and are now read or archived in the inbox; each is marked retracted.
    async fn push_take_retractable(&self, user_id: &str) -> Result<Vec<String>, StoreError>;

    /// Calls waiting (pending).
    async fn push_pending(&self) -> Result<u64, StoreError>;
}

pub const ENQUEUE: &str = "INSERT INTO push_outbox (push_key, user_id, kind, notification_id, body, state, \
     attempts, due_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
     ON CONFLICT (push_key) DO NOTHING";
pub const DUE: &str = "SELECT push_key, user_id, kind, notification_id, body, attempts, created_at_ms \
     FROM push_outbox WHERE state = 'pending' AND due_at_ms <= $1 ORDER BY due_at_ms LIMIT $2";
/// A claim takes a row only if it is still due: of two nodes, one gets it.
pub const LEASE: &str = "UPDATE push_outbox SET due_at_ms = $1 WHERE push_key = $2 AND state = 'pending' AND due_at_ms <= $3";
pub const DONE: &str = "UPDATE push_outbox SET state = $1 WHERE push_key = $2";
pub const RETRY: &str = "UPDATE push_outbox SET attempts = $1, due_at_ms = $2 WHERE push_key = $3";
pub const RETRACTABLE: &str = "SELECT notification_id FROM push_outbox WHERE user_id = $1 AND kind = 'notification' \
     AND retracted = FALSE AND state <> 'failed' AND notification_id IN (SELECT id FROM notifications \
     WHERE user_id = $1 AND (read_at_ms IS NOT NULL OR archived_at_ms IS NOT NULL))";
pub const RETRACTED: &str = "UPDATE push_outbox SET retracted = TRUE WHERE user_id = $1 AND kind = 'notification' AND notification_id = $2";
pub const PENDING: &str = "SELECT COUNT(*) FROM push_outbox WHERE state = 'pending'";

/// Implements [`PushQueue`] for a store with a `pool` and `prepare()`.
macro_rules! impl_push_queue {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::push::PushQueue for $store {
            async fn push_enqueue(
                &self,
                e: &$crate::push::PushEntry,
            ) -> Result<(), $crate::StoreError> {
                self.prepare().await?;
                sqlx::query($crate::push::ENQUEUE)
                    .bind(&e.key)
                    .bind(&e.user_id)
                    .bind(&e.kind)
                    .bind(&e.notification_id)
                    .bind(&e.body)
                    .bind(e.created_at_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn push_claim(
                &self,
                now_ms: i64,
                lease_ms: i64,
                max: u32,
            ) -> Result<Vec<$crate::push::PushEntry>, $crate::StoreError> {
                self.prepare().await?;
                use sqlx::Row;
                let rows = sqlx::query($crate::push::DUE)
                    .bind(now_ms)
                    .bind(i64::from(max))
                    .fetch_all(&self.pool)
                    .await?;
                let mut out = Vec::new();
                for r in rows {
                    let key: String = r.try_get(0)?;
                    let leased = sqlx::query($crate::push::LEASE)
                        .bind(now_ms + lease_ms)
                        .bind(&key)
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    if leased == 1 {
                        let attempts: i32 = r.try_get(5)?;
                        out.push($crate::push::PushEntry {
                            key,
                            user_id: r.try_get(1)?,
                            kind: r.try_get(2)?,
                            notification_id: r.try_get(3)?,
                            body: r.try_get(4)?,
                            attempts: attempts.max(0) as u32,
                            created_at_ms: r.try_get(6)?,
                        });
                    }
                }
                Ok(out)
            }

            async fn push_done(
                &self,
                key: &str,
                result: $crate::push::PushResult,
            ) -> Result<(), $crate::StoreError> {
                self.prepare().await?;
                let state = match result {
                    $crate::push::PushResult::Sent => "sent",
                    $crate::push::PushResult::Failed => "failed",
                };
                sqlx::query($crate::push::DONE).bind(state).bind(key).execute(&self.pool).await?;
                Ok(())
            }

            async fn push_retry(
                &self,
                key: &str,
                attempts: u32,
                due_at_ms: i64,
            ) -> Result<(), $crate::StoreError> {
                self.prepare().await?;
                sqlx::query($crate::push::RETRY)
                    .bind(attempts as i32)
                    .bind(due_at_ms)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn push_take_retractable(
                &self,
                user_id: &str,
            ) -> Result<Vec<String>, $crate::StoreError> {
                self.prepare().await?;
                let ids: Vec<String> = sqlx::query_scalar($crate::push::RETRACTABLE)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?;
                for id in &ids {
                    sqlx::query($crate::push::RETRACTED)
                        .bind(user_id)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                }
                Ok(ids)
            }

            async fn push_pending(&self) -> Result<u64, $crate::StoreError> {
                self.prepare().await?;
                let n: i64 =
                    sqlx::query_scalar($crate::push::PENDING).fetch_one(&self.pool).await?;
                Ok(n as u64)
            }
        }
    };
}
pub(crate) use impl_push_queue;
