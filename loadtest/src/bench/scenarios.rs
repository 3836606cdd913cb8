//! The standard scenarios of `loadtest bench`: their shapes, scaled.

use super::DRAIN_STORM;
use crate::scenario::Scenario;

/// The named scenarios.
pub fn scenarios(scale: f64, duration: f64) -> Vec<(&'static str, &'static str, Scenario)> {
    let users = |n: f64| users_scaled(scale, n);
    let base = Scenario { duration_s: duration, ..Scenario::default() };
    let stream = |concurrent: f64| Scenario {
        users: users(1000.0),
        devices: 2,
        // 250 tokens at 50/s: 5 s turns, so `concurrent` turns stream at once after the ramp.
        tokens_per_turn: 250,
        token_rate: 50.0,
        // As a model's tokens come out of an orchestrator (and as the independent client sent).
        token_bytes: 64,
        turn_rate: concurrent * scale / 5.0,
        max_turns: (concurrent * scale).round() as u32,
        ..base.clone()
    };
    vec![
        (
            "idle",
            "10,000 WebSocket endpoints connected, held 5 s: memory per endpoint",
            Scenario {
                users: users(5000.0),
                devices: 2,
                duration_s: 0.0,
                hold_s: 5.0,
                ..base.clone()
            },
        ),
        (
            "stream20k",
            "2,000 endpoints (1,000 users × 2), 200 concurrent turns at 50 tokens/s (64-byte deltas, one NDJSON request per turn, each on its own jittered timer): 20,000 deliveries/s",
            stream(200.0),
        ),
        (
            "stream",
            "2,000 endpoints (1,000 users × 2), 500 concurrent turns at 50 tokens/s (as stream20k): 50,000 deliveries/s",
            stream(500.0),
        ),
        (
            "burst",
            "one notification to each of 1,000 users (2,000 endpoints) at once",
            Scenario {
                users: users(1000.0),
                devices: 2,
                burst: true,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "burstlog",
            "one turn of 3,000 deltas in one NDJSON write to each of 10 users × 2 devices (v1.1: no close)",
            Scenario {
                users: users(10.0),
                devices: 2,
                burst_deltas: 3000,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "storm",
            "10,000 notifications to one user (4 devices) as fast as taken, over categories and priorities her preferences filter",
            Scenario {
                users: 1,
                devices: 4,
                notify_storm: (10_000.0 * scale).round().max(1.0) as u32,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "tasks",
            "200 long tasks (100 users × 2 devices, a third over SSE), 200 chunks each at 20/s (10 s); 20 followed over A2A; devices and followers dropped and resumed at 20%/s",
            Scenario {
                users: users(100.0),
                devices: 2,
                sse_ratio: 0.34,
                tasks: users(200.0),
                a2a_followers: users(20.0),
                tokens_per_turn: 200,
                token_rate: 20.0,
                chaos_rate: 0.2,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "chaos",
            "stream20k with 5% of endpoints dropping and resuming every second",
            Scenario { chaos_rate: 0.05, ..stream(200.0) },
        ),
        (
            DRAIN_STORM,
            "Redis mode, 2 nodes: 10,000 endpoints (5,000 users × 2, one of each user's devices on each node) while turns stream; node 0 is drained 5 s in and every endpoint it held comes back on node 1 at once and resumes (the reconnect storm), from 64 loopback source addresses",
            Scenario {
                users: users(5000.0),
                devices: 2,
                tokens_per_turn: 50,
                token_rate: 50.0,
                turn_rate: 20.0,
                max_turns: 40,
                drain_after_s: 5.0,
                // From 64 addresses, as a population would: from one, the gateway's per-IP
                // cap on connections not yet authenticated paced the storm with 429s.
                source_addresses: 64,
                ..base.clone()
            },
        ),
        (
            "saturate",
            "200 endpoints (20 users × 10 devices), 2,000 deltas per user sent unpaced: deliveries/s at saturation",
            Scenario {
                users: users(20.0),
                devices: 10,
                tokens_per_turn: SATURATE_TOKENS,
                token_rate: 100_000.0,
                turn_rate: 100_000.0,
                max_turns: users(20.0),
                duration_s: 0.05,
                ..base.clone()
            },
        ),
    ]
}

pub(super) fn users_scaled(scale: f64, n: f64) -> u32 {
    ((n * scale).round() as u32).max(1)
}

/// Deltas per user in the saturation scenario; the bare fan-out sends as many frames (+2 for the
/// turn's start and end).
pub(super) const SATURATE_TOKENS: u32 = 2000;
