//! A load scenario: defaults, then a TOML file, then command-line flags. Every count and
//! duration is bounded so a run always stops by itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Declares the scenario once: the struct (TOML, JSON report) and its flags (all optional, so a
/// flag given overrides the file and a flag absent does not).
macro_rules! scenario {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $default:expr ),* $(,)?) => {
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Scenario { $( $(#[doc = $doc])* pub $field: $ty, )* }

        impl Default for Scenario {
            fn default() -> Self { Scenario { $( $field: $default, )* } }
        }

        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ScenarioArgs { $( $(#[doc = $doc])* #[arg(long)] pub $field: Option<$ty>, )* }

        impl ScenarioArgs {
            pub fn apply(&self, s: &mut Scenario) {
                $( if let Some(v) = &self.$field { s.$field = v.clone(); } )*
            }
        }
    };
}

scenario! {
    /// Base URL of the gateway (127.0.0.1 only); several nodes of one gateway: comma-separated
    /// (endpoints move to the next node on every reconnect, the producer spreads over them).
    url: String = "http://127.0.0.1:8080".into(),
    /// Users; each holds `devices` endpoints.
    users: u32 = 100,
    /// Endpoints per user.
    devices: u32 = 2,
    /// Fraction of endpoints over SSE (the rest WebSocket).
    sse_ratio: f64 = 0.0,
    /// How long the producer runs, seconds.
    duration_s: f64 = 10.0,
    /// Turns started per second.
    turn_rate: f64 = 10.0,
    /// At most this many turns stream at once.
    max_turns: u32 = 200,
    /// Deltas per turn.
    tokens_per_turn: u32 = 50,
    /// Deltas per second within one turn.
    token_rate: f64 = 50.0,
    /// Bytes of text per delta (at least 13: a send timestamp is inside).
    token_bytes: u32 = 16,
    /// Notifications per second (to random users).
    notification_rate: f64 = 0.0,
    /// Instead of turns: one notification to every user at once; time until the last device has it.
    burst: bool = false,
    /// Instead of turns: one turn to each user whose `burst_deltas` deltas and end come in one
    /// NDJSON write (PROTOCOL.md v1.1: every reading device gets all of it, no close).
    burst_deltas: u32 = 0,
    /// Instead of turns: this many notifications to the first user as fast as the gateway takes
    /// them, over categories and priorities her preferences filter (issue 11's storm).
    notify_storm: u32 = 0,
    /// Instead of turns: this many long tasks (one per user in turn), each `tokens_per_turn`
    /// artifact chunks at `token_rate`, then `completed` (issue 12).
    tasks: u32 = 0,
    /// Of those tasks, this many are also followed over A2A `SubscribeToTask`, dropped at
    /// `chaos_rate` and resumed with `Last-Event-ID`.
    a2a_followers: u32 = 0,
    /// Instead of turns: this many `high` notifications, each to a user with no endpoint, which
    /// the gateway must push to the webhook receiver this run starts (`webhook_listen`).
    push_offline: u32 = 0,
    /// Where the webhook receiver listens (the gateway's GATEWAY_PUSH_WEBHOOK_URL is
    /// `http://<this>/push`); 127.0.0.1 only.
    webhook_listen: String = "127.0.0.1:18099".into(),
    /// The gateway's GATEWAY_PUSH_WEBHOOK_SECRET, to verify `X-Gateway-Signature`.
    webhook_secret: String = String::new(),
    /// Share of keys whose first push the receiver refuses with 503 (their retry must keep
    /// the key).
    webhook_refuse: f64 = 0.2,
    /// Several nodes: this many seconds into the load the first node (the first `--gateway-pid`)
    /// is drained with SIGTERM; every endpoint on it comes back on another node and resumes at
    /// once (the reconnect storm). 0: no drain.
    drain_after_s: f64 = 0.0,
    /// WebSocket endpoints connect from this many loopback source addresses (127.0.0.1, .2, …)
    /// as a population behind many addresses would; 1: the OS picks (all from 127.0.0.1).
    source_addresses: u32 = 1,
    /// Fraction of endpoints dropping and resuming per second (chaos).
    chaos_rate: f64 = 0.0,
    /// New connections per second while connecting.
    connect_rate: f64 = 2000.0,
    /// Longest wait, seconds, for every endpoint to catch up after the producer stops.
    settle_s: f64 = 15.0,
    /// Seconds to hold the endpoints connected before measuring (idle scenarios).
    hold_s: f64 = 0.0,
}

impl Scenario {
    /// Loads a TOML scenario file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(toml::from_str(&text)?)
    }

    /// The gateway's nodes.
    pub fn urls(&self) -> Vec<&str> {
        self.url.split(',').map(|u| u.trim().trim_end_matches('/')).collect()
    }

    pub fn endpoints(&self) -> u64 {
        self.users as u64 * self.devices as u64
    }

    /// Refuses scenarios that would not stop or would leave the machine.
    pub fn validate(&self) -> anyhow::Result<()> {
        let host_ok = self.urls().iter().all(|u| {
            ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
                .iter()
                .any(|p| u.starts_with(p))
        });
        anyhow::ensure!(
            host_ok,
            "url must be http://127.0.0.1:PORT (load goes to this machine only)"
        );
        anyhow::ensure!(
            self.endpoints() >= 1 && self.endpoints() <= 100_000,
            "users × devices must be 1..=100000"
        );
        anyhow::ensure!((0.0..=1.0).contains(&self.sse_ratio), "sse_ratio must be within 0..=1");
        anyhow::ensure!(
            self.duration_s >= 0.0 && self.duration_s <= 3600.0,
            "duration_s must be within 0..=3600"
        );
        anyhow::ensure!(
            self.hold_s >= 0.0 && self.hold_s <= 3600.0,
            "hold_s must be within 0..=3600"
        );
        anyhow::ensure!(
            self.settle_s > 0.0 && self.settle_s <= 600.0,
            "settle_s must be within 0..=600"
        );
        anyhow::ensure!(
            self.turn_rate >= 0.0 && self.turn_rate <= 100_000.0,
            "turn_rate out of range"
        );
        anyhow::ensure!(
            self.token_rate > 0.0 && self.token_rate <= 100_000.0,
            "token_rate out of range"
        );
        anyhow::ensure!(self.tokens_per_turn <= 1_000_000, "tokens_per_turn out of range");
        anyhow::ensure!(
            self.token_bytes >= 13 && self.token_bytes <= 1 << 20,
            "token_bytes must be 13..=1048576"
        );
        anyhow::ensure!((0.0..=1.0).contains(&self.chaos_rate), "chaos_rate must be within 0..=1");
        anyhow::ensure!(
            (1..=60_000).contains(&self.source_addresses),
            "source_addresses must be within 1..=60000 (127.0.0.0/8, 250 per third octet)"
        );
        anyhow::ensure!(self.connect_rate > 0.0, "connect_rate must be positive");
        anyhow::ensure!(
            self.notification_rate >= 0.0 && self.notification_rate <= 1e6,
            "notification_rate out of range"
        );
        Ok(())
    }
}

/// Where tokens come from.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct TokenArgs {
    /// HS256 secret to mint tokens with (the gateway's GATEWAY_AUTH_HS256_SECRET).
    #[arg(long, env = "LOADTEST_SECRET")]
    pub secret: Option<String>,
    /// File of `sub token` lines (sub `producer` for the producer), instead of --secret.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Spread minted users over this many tenants (`tid` claim `tenant-<i mod n>`); 0: no `tid`.
    #[arg(long, default_value_t = 0)]
    pub tenants: u32,
}
