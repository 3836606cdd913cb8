//! A turn service's housekeeping, run by every node on a timer: turns idle past
//! `GATEWAY_TURN_IDLE_TIMEOUT_MS` ended, streaming turns checkpointed (embedded mode), the
//! local entries of turns no longer worked on forgotten.

use wire::TurnStatus;
use wire::api::{EndItem, EventItem};

use super::{LOCAL_FOR, STREAMING, Turns};
use crate::backplane::{Blobs, Unavailable, now_ms};
use crate::domain::turn::{By, TurnRec, record_name};

/// Idle candidates looked at per sweep.
const PER_SWEEP: usize = 256;

impl Turns {
    /// Housekeeping: idle turns ended, open turns checkpointed (embedded), local entries aged.
    pub async fn sweep(&self) {
        if let Err(e) = self.end_idle().await {
            tracing::warn!(error = %e, "idle turn sweep failed; next sweep");
        }
        if self.sink.checkpoints() {
            self.checkpoint().await;
        }
        self.traces.retain(|turn_id, _| self.local.contains_key(turn_id));
        self.local.retain(|_, l| {
            l.try_lock().map_or(true, |l| l.used.is_some_and(|u| u.elapsed() < LOCAL_FOR))
        });
    }

    /// Ends every turn that streamed nothing for `turn_idle` as `failed` (`idle_timeout`): a
    /// producer that died mid-turn leaves neither the devices nor the state waiting forever.
    /// On every node at once the append's condition makes it one end.
    async fn end_idle(&self) -> Result<(), Unavailable> {
        let cutoff = now_ms() - self.cfg.turn_idle.as_millis() as i64;
        for turn_id in self.log.due(STREAMING, cutoff, PER_SWEEP).await? {
            let Some(user) = self.owner(&turn_id).await? else {
                self.log.unwatch(STREAMING, &turn_id).await?;
                continue;
            };
            let read = self.log.read(&user, &record_name(&turn_id), Blobs::default()).await?;
            let rec = match read.map(|r| TurnRec::parse(&r.record)).transpose() {
                Ok(Some(rec)) if rec.status == TurnStatus::Streaming => rec,
                _ => {
                    self.log.unwatch(STREAMING, &turn_id).await?;
                    continue;
                }
            };
            if rec.last_ms > cutoff {
                self.log.watch(STREAMING, &turn_id, rec.last_ms).await?;
                continue;
            }
            let error = Some(serde_json::Value::from("idle_timeout"));
            let end = EventItem::End(EndItem { status: TurnStatus::Failed, error });
            match self.change(&turn_id, Some(&user), vec![end], By::Gateway).await {
                Ok(a) if a.last_seq.is_some() => {
                    tracing::info!(%turn_id, "ended a turn idle past GATEWAY_TURN_IDLE_TIMEOUT_MS")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%turn_id, error = %e, "cannot end an idle turn; next sweep");
                    continue;
                }
            }
            self.log.unwatch(STREAMING, &turn_id).await?;
        }
        Ok(())
    }

    /// Writes the text of every streaming turn that grew since its last checkpoint (embedded
    /// mode, where a crash would otherwise lose it; see [`recover`](crate::domain::recover)).
    async fn checkpoint(&self) {
        let entries: Vec<_> =
            self.local.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        for (turn_id, local) in entries {
            let mut l = local.lock().await;
            let Some(rec) = l.rec.clone() else { continue };
            if rec.status != TurnStatus::Streaming || rec.next_index == l.checkpointed {
                continue;
            }
            let blobs = Blobs { text: true, items: false };
            let Ok(Some(read)) = self.log.read(&rec.user_id, &record_name(&turn_id), blobs).await
            else {
                continue;
            };
            match self.sink.checkpoint(&turn_id, &read.text, rec.truncated, rec.next_index).await {
                Ok(()) => l.checkpointed = rec.next_index,
                Err(e) => tracing::warn!(%turn_id, error = %e, "checkpoint failed"),
            }
        }
    }
}
