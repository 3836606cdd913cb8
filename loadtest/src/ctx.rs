//! What every task of a run shares.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::checker::{Ledger, Violations};
use crate::scenario::Scenario;
use crate::stats::Stats;
use crate::tokens::Tokens;

pub struct Ctx {
    pub scenario: Scenario,
    /// Tags this run's turn ids, so runs against one gateway never collide.
    pub run: String,
    /// The time base of the send timestamps embedded in deltas and notifications.
    pub origin: Instant,
    pub stats: Stats,
    pub violations: Arc<Violations>,
    pub ledger: Arc<Ledger>,
    /// Newest seq the gateway reported to the producer, per user: what endpoints must reach.
    pub heads: DashMap<u32, u64>,
    /// Per endpoint: the next seq it expects (to see when every endpoint caught up).
    pub progress: Vec<AtomicU64>,
    /// Endpoints that received their first hello.
    pub connected: AtomicU64,
    pub stop: CancellationToken,
    pub tokens: Tokens,
    pub http: reqwest::Client,
    /// `http://host:port` of each node.
    pub bases: Vec<String>,
    /// `ws://host:port` of each node.
    pub ws_bases: Vec<String>,
}

impl Ctx {
    /// Microseconds since the run began.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// Records that the gateway put `seq` in `user`'s log.
    pub fn saw_head(&self, user: u32, seq: u64) {
        let mut e = self.heads.entry(user).or_default();
        if seq > *e {
            *e = seq;
        }
    }

    /// Node `n` (any number: wraps around).
    pub fn base(&self, n: usize) -> &str {
        &self.bases[n % self.bases.len()]
    }

    pub fn ws_base(&self, n: usize) -> &str {
        &self.ws_bases[n % self.ws_bases.len()]
    }

    pub fn user_of(&self, endpoint: usize) -> u32 {
        (endpoint as u64 % self.scenario.users as u64) as u32
    }

    pub fn is_sse(&self, endpoint: usize) -> bool {
        // Spread SSE endpoints evenly: endpoint i is SSE when the running share falls behind.
        let r = self.scenario.sse_ratio;
        ((endpoint as f64 + 1.0) * r).floor() > (endpoint as f64 * r).floor()
    }
}

pub type SharedCtx = Arc<Ctx>;
