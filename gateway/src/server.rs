//! Serving and draining.
//!
//! A drain (SIGTERM/SIGINT, or the caller's shutdown future) goes: refuse new work (`/readyz`
//! 503, new connections and new turns/notifications 503), tell every endpoint to leave
//! (`reconnect`, close 1012), wait for them and their presence removal, then stop accepting and
//! let in-flight producer requests finish, then store what the outbox holds while time is left
//! (what is not stored stays in the durable outbox for the next start), all within
//! `GATEWAY_DRAIN_TIMEOUT_MS`.

use std::future::Future;
use std::io;
use std::time::Duration;

use presence::EndpointKey;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often expired logs, turns and dedup keys are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How often the outbox's depth and age are read into the metrics.
const OUTBOX_STATS_EVERY: Duration = Duration::from_secs(2);

/// Serves `state` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let background = Background::start(&state);
    let app = crate::api::router(state.clone());
    let stop_accepting = CancellationToken::new();
    let server = {
        let stop = stop_accepting.clone();
        let admission = state.admission.clone();
        tokio::spawn(crate::accept::serve(listener, app, admission, stop))
    };

    shutdown.await;
    let deadline = Instant::now() + state.limits.drain_timeout;
    tracing::info!(endpoints = state.local_endpoints.len(), "draining");
    state.begin_drain();
    state.connections.close();
    // WebSocket tasks end on their own after the goodbye; SSE streams end and their sessions
    // drop. Wait until no endpoint is left (or the deadline).
    let endpoints_gone = async {
        while !state.local_endpoints.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        state.connections.wait().await;
    };
    if timeout_at(deadline, endpoints_gone).await.is_err() {
        tracing::warn!(
            left = state.local_endpoints.len(),
            "drain deadline reached with endpoints still open"
        );
    }
    stop_accepting.cancel();
    match timeout_at(deadline, server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => tracing::error!(error = %join, "server task failed"),
        Err(_) => tracing::warn!("drain deadline reached with requests in flight"),
    }
    if timeout_at(deadline, background.stop()).await.is_err() {
        tracing::warn!("drain deadline reached while background tasks were stopping");
    }
    state.persister.flush(deadline).await;
    tracing::info!("drained");
    Ok(())
}

/// Owned background tasks, stopped on shutdown.
struct Background {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Background {
    fn start(state: &AppState) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move {
            every(SWEEP_EVERY, &st, || async {
                s.backplane.sweep().await;
                s.turns.sweep().await;
                s.tasks.sweep();
                s.metrics.upkeep();
                s.metrics.backplane_up.set(if s.backplane.ready().await.is_ok() {
                    1.0
                } else {
                    0.0
                });
                match s.notes.fire_digests().await {
                    Ok(n) => s.metrics.digests.increment(n),
                    Err(e) => tracing::warn!(error = %e, "digest sweep failed; next sweep"),
                }
            })
            .await;
        });
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move { s.persister.run(st).await });
        if let Some(push) = state.push.clone() {
            let st = stop.clone();
            tasks.spawn(async move { push.run(st).await });
        }
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move { s.backplane.run(st).await });
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move {
            every(OUTBOX_STATS_EVERY, &st, || async {
                // The persister's counters are mirrored when /metrics is read; the outbox's
                // depth needs a query, so it is read here, not per scrape.
                match s.persister.outbox().stats().await {
                    Ok(stats) => s.metrics.outbox(&stats, store_client::outbox::now_ms()),
                    Err(e) => tracing::warn!(error = %e, "cannot read the outbox's depth"),
                }
                if s.push.is_some() {
                    match s.store.push_pending().await {
                        Ok(n) => s.metrics.push_pending.set(n as f64),
                        Err(e) => tracing::warn!(error = %e, "cannot read the push outbox's depth"),
                    }
                }
            })
            .await;
        });
        if let Some(retention) = state.limits.store_retention {
            let (s, st) = (state.clone(), stop.clone());
            tasks.spawn(async move {
                let period =
                    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
                every(period, &st, || async {
                    let cutoff = store_client::outbox::now_ms() - retention.as_millis() as i64;
                    match s.store.purge_before(cutoff).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(turns = n, "purged turns past the retention period")
                        }
                        Err(e) => tracing::warn!(error = %e, "retention purge failed; next period"),
                    }
                })
                .await;
            });
        }
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move {
            let retention = s.limits.inbox_retention;
            let period = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
            every(period, &st, || async {
                let cutoff = store_client::outbox::now_ms() - retention.as_millis() as i64;
                match s.store.inbox_purge(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        notifications = n,
                        "purged notifications past the inbox retention"
                    ),
                    Err(e) => tracing::warn!(error = %e, "inbox purge failed; next period"),
                }
            })
            .await;
        });
        let (s, st) = (state.clone(), stop.clone());
        tasks.spawn(async move {
            // Refresh well inside the TTL so one late beat does not drop live endpoints.
            every(s.presence.ttl() / 3, &st, || refresh_presence(&s)).await;
        });
        Background { stop, tasks }
    }

    async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One presence beat: every endpoint of this node in one batched refresh, and those presence
/// lost meanwhile (the node was cut off past the TTL, Redis restarted) registered again.
async fn refresh_presence(s: &AppState) {
    let keys: Vec<EndpointKey> = s
        .local_endpoints
        .iter()
        .map(|e| EndpointKey { user_id: e.value().0.to_string(), conn_id: e.key().clone() })
        .collect();
    let missing = match s.presence.refresh(&keys).await {
        Ok(m) => m,
        Err(e) => return tracing::warn!(error = %e, "presence refresh failed"),
    };
    if !missing.is_empty() {
        tracing::info!(endpoints = missing.len(), "registering endpoints presence had lost");
    }
    for key in missing {
        let Some(info) = s.local_endpoints.get(&key.conn_id).map(|e| e.value().1.clone()) else {
            continue; // closed meanwhile
        };
        if let Err(e) = s.presence.register(&key.user_id, info).await {
            return tracing::warn!(error = %e, "presence re-register failed");
        }
    }
}

/// Runs `f` every `period` until `stop` is cancelled (an `f` under way is abandoned).
async fn every<F: Future<Output = ()>>(
    period: Duration,
    stop: &CancellationToken,
    mut f: impl FnMut() -> F,
) {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = f() => {}
                }
            }
        }
    }
}
