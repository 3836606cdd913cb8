//! Turns a producer abandoned (it died mid-turn, or forgot the end): ended `failed` with
//! `error: "idle_timeout"` once they streamed nothing for `GATEWAY_TURN_IDLE_TIMEOUT_MS`, so
//! devices see the end and the turn is stored with the text it had.
//!
//! Each new turn is noted in one sorted set, scored by when it was last known active. Every
//! node's sweep looks at the entries older than the limit: a turn that ended or is gone leaves
//! the set; one that streamed since (its state's `last`) moves forward; one still idle is ended
//! through the ordinary apply path (the outbox first, then `turn.end`). Two nodes ending the
//! same turn at once are one end: the second finds it ended.

use redis::AsyncCommands;
use wire::TurnStatus;
use wire::api::{EndItem, EventItem};

use super::{RedisBackplane, now_ms};

/// Idle candidates looked at per sweep.
const PER_SWEEP: isize = 256;

impl RedisBackplane {
    /// Notes a new turn for the idle sweep (best effort: a turn missed here still expires with
    /// its keys, only without an end).
    pub(super) async fn watch_idle(&self, turn_id: &str, at_ms: i64) {
        let mut conn = self.conn.clone();
        let added: redis::RedisResult<i64> = conn.zadd(self.keys.streaming(), turn_id, at_ms).await;
        if let Err(e) = added {
            tracing::warn!(turn_id, error = %e, "cannot note a turn for the idle sweep");
        }
    }

    /// Ends the turns idle past the limit (see the module doc).
    pub(super) async fn end_idle_turns(&self) {
        if let Err(e) = self.try_end_idle_turns().await {
            tracing::warn!(error = %e, "idle turn sweep failed; next sweep");
        }
    }

    async fn try_end_idle_turns(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let set = self.keys.streaming();
        let cutoff = now_ms() - self.settings.turn_idle.as_millis() as i64;
        let due: Vec<String> = conn.zrangebyscore_limit(&set, "-inf", cutoff, 0, PER_SWEEP).await?;
        for turn_id in due {
            let user = match self.owner(&turn_id).await {
                Ok(Some(u)) => u,
                Ok(None) => {
                    let _: i64 = conn.zrem(&set, &turn_id).await?;
                    continue;
                }
                Err(_) => return Ok(()), // Redis is away: next sweep
            };
            let state = self.keys.turn(&user, &turn_id).state;
            let (status, last): (Option<String>, Option<i64>) = redis::cmd("HMGET")
                .arg(&state)
                .arg("status")
                .arg("last")
                .query_async(&mut conn)
                .await?;
            match (status.as_deref(), last) {
                (Some("streaming"), Some(last)) if last > cutoff => {
                    let _: i64 = conn.zadd(&set, &turn_id, last).await?;
                }
                (Some("streaming"), _) => {
                    let end = EndItem {
                        status: TurnStatus::Failed,
                        error: Some(serde_json::Value::from("idle_timeout")),
                    };
                    let applied =
                        self.apply_items(&user, &turn_id, "", vec![EventItem::End(end)]).await;
                    if applied.last_seq.is_some() {
                        tracing::info!(
                            turn_id,
                            "ended a turn idle past GATEWAY_TURN_IDLE_TIMEOUT_MS"
                        );
                    }
                    let _: i64 = conn.zrem(&set, &turn_id).await?;
                }
                _ => {
                    let _: i64 = conn.zrem(&set, &turn_id).await?;
                }
            }
        }
        Ok(())
    }
}
