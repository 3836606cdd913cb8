//! The gateway's metrics: one Prometheus registry created at start-up and handed down, with
//! every handle registered once (so every series exists, at zero, before anything happens) and
//! the hot path only touching an atomic. Latencies are real Prometheus histograms in seconds,
//! buckets from 100 µs to 10 s, every event observed.
//!
//! - [`help`]: the `# HELP` of every metric.

mod buckets;
mod help;
pub mod tenants;

pub use buckets::Buckets;
use std::fmt::Write as _;
use std::sync::Arc;
pub use tenants::{TenantCounters, Tenants};

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use store_client::{OutboxStats, PersistCounters};
use wire::Transport;

/// Handles to every metric the gateway records.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    endpoints_ws: Gauge,
    endpoints_sse: Gauge,
    pub events_published: Counter,
    /// Script calls carrying appends to Redis (appends per call: the append count over this).
    pub redis_batches: Counter,
    pub events_delivered: Counter,
    /// Of those, written by the publisher itself (the WebSocket direct path).
    pub events_direct: Counter,
    pub slow_consumer_closes: Counter,
    pub auth_failures: Counter,
    resume_hits: Counter,
    resume_misses: Counter,
    pub bad_frames: Counter,
    pub turns_started: Counter,
    pub notifications: Counter,
    pub notifications_deduplicated: Counter,
    pub push_queued: Counter,
    pub push_sent: Counter,
    pub push_failed: Counter,
    pub push_retracted: Counter,
    /// Calls that failed and will be tried again (a flapping webhook).
    pub push_retried: Counter,
    /// Notifications by disposition: delivered, held, digested, suppressed.
    pub dispositions: [Counter; 4],
    /// Notifications by priority: low, normal, high, critical.
    pub priorities: [Counter; 4],
    /// Notifications by category: the first [`MAX_CATEGORIES`] seen, the rest as `other`.
    categories: dashmap::DashMap<String, Counter>,
    pub digests: Counter,
    pub marks: Counter,
    /// Push calls waiting (read from the push outbox with the turn outbox's stats).
    pub push_pending: Gauge,
    /// Bytes the retained user logs of this node hold (read from the hub when scraped).
    pub log_bytes: Gauge,
    /// Open TCP connections, against `GATEWAY_MAX_CONNECTIONS` (read when scraped).
    pub connections_open: Gauge,
    /// Whether the backplane answered the housekeeping loop's last readiness check.
    pub backplane_up: Gauge,
    outbox_depth: Gauge,
    outbox_oldest_age: Gauge,
    outbox_set_aside: Gauge,
    turns_stored: Counter,
    turns_already_stored: Counter,
    turns_discarded: Counter,
    store_retries: Counter,
    delivery_ws: Buckets,
    delivery_sse: Buckets,
    pub first_delta: Arc<Buckets>,
    pub resume_replay: Buckets,
    pub append: Buckets,
    pub store_write: Arc<Buckets>,
    /// Request durations by (route, status class): routes are the router's templates, so the
    /// series are bounded.
    http: dashmap::DashMap<(String, u16), Histogram>,
    /// Traffic by tenant, bounded (see [`tenants`]).
    pub tenants: Tenants,
}

/// Latency buckets, seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Replay sizes, events.
const REPLAY_BUCKETS: [f64; 8] = [0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// The routes whose request durations exist from start-up (the rest appear when first used).
const TIMED_ROUTES: [&str; 8] = [
    "/v1/turns",
    "/v1/turns/{turn_id}/events",
    "/v1/notifications",
    "/v1/tasks",
    "/v1/tasks/{task_id}/events",
    "/v1/conversations/{conversation_id}/turns",
    "/a2a",
    "/readyz",
];

/// Adds a histogram with no observation to the exposition, beside its family's `# TYPE` line
/// (a family's samples stay together, as the text format wants).
fn zero_histogram(text: &mut String, name: &str, labels: &str, buckets: &[f64]) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut lines = String::new();
    for le in buckets.iter().map(|b| b.to_string()).chain(["+Inf".to_owned()]) {
        let _ = writeln!(lines, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} 0");
    }
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(lines, "{name}_sum{braces} 0");
    let _ = writeln!(lines, "{name}_count{braces} 0");
    let family = format!("# TYPE {name} histogram\n");
    match text.find(&family) {
        Some(at) => text.insert_str(at + family.len(), &lines),
        None => {
            let help = help::HELP.iter().find(|h| h.0 == name).map_or("", |h| h.2);
            let _ = write!(text, "# HELP {name} {help}\n{family}{lines}");
        }
    }
}

/// Status classes a request duration is labelled with.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

const META: Metadata<'static> = Metadata::new("gateway", Level::INFO, None);

/// Distinct category labels a node exports (producers choose categories: the series stay
/// bounded).
pub const MAX_CATEGORIES: usize = 64;

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("gateway_resume_replay_events".into()),
                    &REPLAY_BUCKETS,
                )
            })
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        for (name, kind, text) in help::HELP {
            let (name, text) = (metrics::KeyName::from(*name), metrics::SharedString::from(*text));
            match kind {
                'c' => recorder.describe_counter(name, None, text),
                'g' => recorder.describe_gauge(name, None, text),
                'x' => recorder.describe_histogram(name, None, text),
                _ => {} // our own histograms: rendered with their HELP in `render`
            }
        }
        let counter = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
            recorder.register_counter(&Key::from_parts(name, labels), &META)
        };
        let gauge = |name: &'static str, transport: &'static str| {
            recorder.register_gauge(
                &Key::from_parts(name, vec![Label::new("transport", transport)]),
                &META,
            )
        };
        let plain_gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_name(name), &META);
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&recorder, || process.describe());
        let m = Metrics {
            endpoints_ws: gauge("gateway_endpoints", "ws"),
            endpoints_sse: gauge("gateway_endpoints", "sse"),
            events_published: counter("gateway_events_published_total", &[]),
            redis_batches: counter("gateway_redis_append_batches_total", &[]),
            events_delivered: counter("gateway_events_delivered_total", &[]),
            events_direct: counter("gateway_events_written_directly_total", &[]),
            slow_consumer_closes: counter("gateway_slow_consumer_closes_total", &[]),
            auth_failures: counter("gateway_auth_failures_total", &[]),
            resume_hits: counter("gateway_resume_total", &[("result", "hit")]),
            resume_misses: counter("gateway_resume_total", &[("result", "miss")]),
            bad_frames: counter("gateway_bad_frames_total", &[]),
            turns_started: counter("gateway_turns_started_total", &[]),
            notifications: counter("gateway_notifications_total", &[]),
            notifications_deduplicated: counter("gateway_notifications_deduplicated_total", &[]),
            push_queued: counter("gateway_push_total", &[("result", "queued")]),
            push_sent: counter("gateway_push_total", &[("result", "sent")]),
            push_failed: counter("gateway_push_total", &[("result", "failed")]),
            push_retracted: counter("gateway_push_total", &[("result", "retracted")]),
            push_retried: counter("gateway_push_total", &[("result", "retried")]),
            priorities: ["low", "normal", "high", "critical"]
                .map(|p| counter("gateway_notifications_by_priority_total", &[("priority", p)])),
            categories: dashmap::DashMap::new(),
            digests: counter("gateway_notification_digests_total", &[]),
            marks: counter("gateway_notification_marks_total", &[]),
            push_pending: plain_gauge("gateway_push_pending"),
            dispositions: ["delivered", "held", "digested", "suppressed"]
                .map(|d| counter("gateway_notification_dispositions_total", &[("disposition", d)])),
            log_bytes: plain_gauge("gateway_log_bytes"),
            connections_open: plain_gauge("gateway_connections_open"),
            backplane_up: plain_gauge("gateway_backplane_up"),
            outbox_depth: plain_gauge("gateway_outbox_depth"),
            outbox_oldest_age: plain_gauge("gateway_outbox_oldest_age_seconds"),
            outbox_set_aside: plain_gauge("gateway_outbox_set_aside"),
            turns_stored: counter("gateway_turns_persisted_total", &[("result", "stored")]),
            turns_already_stored: counter(
                "gateway_turns_persisted_total",
                &[("result", "already_stored")],
            ),
            turns_discarded: counter("gateway_turns_persisted_total", &[("result", "discarded")]),
            store_retries: counter("gateway_store_retries_total", &[]),
            delivery_ws: Buckets::new(&LATENCY_BUCKETS),
            delivery_sse: Buckets::new(&LATENCY_BUCKETS),
            first_delta: Arc::new(Buckets::new(&LATENCY_BUCKETS)),
            resume_replay: Buckets::new(&REPLAY_BUCKETS),
            append: Buckets::new(&LATENCY_BUCKETS),
            store_write: Arc::new(Buckets::new(&LATENCY_BUCKETS)),
            http: dashmap::DashMap::new(),
            tenants: Tenants::new(20),
            recorder,
            handle,
            process,
        };
        // Zero-valued series are not printed until touched; touch them so dashboards see 0.
        m.endpoints_ws.increment(0.0);
        m.endpoints_sse.increment(0.0);
        m.log_bytes.set(0.0);
        m.connections_open.set(0.0);
        m.backplane_up.set(1.0);
        m.outbox(&OutboxStats::default(), 0);
        m.persistence(&PersistCounters::default());
        m
    }

    /// Counts live events written now to an endpoint of `tenant`, each given as (when it was
    /// appended, bytes of JSON): delivered events, the transport's delivery latency, and the
    /// tenant's events and bytes. One place for the endpoint's task and the direct path.
    pub fn delivered<'a>(
        &self,
        t: Transport,
        tenant: &TenantCounters,
        events: impl Iterator<Item = (&'a tokio::time::Instant, usize)>,
    ) {
        let h = match t {
            Transport::Ws => &self.delivery_ws,
            Transport::Sse => &self.delivery_sse,
        };
        let now = tokio::time::Instant::now();
        let (mut n, mut bytes) = (0u64, 0u64);
        for (at, size) in events {
            h.record(now.saturating_duration_since(*at).as_secs_f64());
            n += 1;
            bytes += size as u64;
        }
        self.events_delivered.increment(n);
        tenant.events.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        tenant.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Observes one HTTP request: its route template and status.
    pub fn http_request(&self, route: &str, status: u16, secs: f64) {
        let class = (status / 100).clamp(1, 5);
        if let Some(h) = self.http.get(&(route.to_owned(), class)) {
            return h.record(secs);
        }
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("status_class", CLASSES[class as usize - 1]),
        ];
        let key = Key::from_parts("gateway_http_request_duration_seconds", labels);
        let h = self
            .http
            .entry((route.to_owned(), class))
            .or_insert_with(|| self.recorder.register_histogram(&key, &META));
        h.record(secs);
    }

    /// Folds the histograms' recent samples into their buckets (bounded memory between
    /// scrapes); called by the housekeeping loop.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Counts a notification of `category` (bounded, see [`MAX_CATEGORIES`]).
    pub fn category(&self, category: &str) {
        if let Some(c) = self.categories.get(category) {
            return c.increment(1);
        }
        let label = if self.categories.len() < MAX_CATEGORIES { category } else { "other" };
        let key = Key::from_parts(
            "gateway_notifications_by_category_total",
            vec![Label::new("category", label.to_owned())],
        );
        let c = self
            .categories
            .entry(label.to_owned())
            .or_insert_with(|| self.recorder.register_counter(&key, &META));
        c.increment(1);
    }

    /// The outbox's depth, the age of its oldest entry and what was set aside.
    pub fn outbox(&self, stats: &OutboxStats, now_ms: i64) {
        self.outbox_depth.set(stats.depth as f64);
        let age = stats.oldest_enqueued_ms.map_or(0, |t| (now_ms - t).max(0));
        self.outbox_oldest_age.set(age as f64 / 1000.0);
        self.outbox_set_aside.set(stats.set_aside as f64);
    }

    /// What the persister has done (its counters are the source; these mirror them).
    pub fn persistence(&self, c: &PersistCounters) {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        self.turns_stored.absolute(get(&c.stored));
        self.turns_already_stored.absolute(get(&c.already_stored));
        self.turns_discarded.absolute(get(&c.discarded));
        self.store_retries.absolute(get(&c.retries));
    }

    pub fn endpoint_opened(&self, t: Transport) {
        self.endpoints(t).increment(1.0);
    }

    pub fn endpoint_closed(&self, t: Transport) {
        self.endpoints(t).decrement(1.0);
    }

    fn endpoints(&self, t: Transport) -> &Gauge {
        match t {
            Transport::Ws => &self.endpoints_ws,
            Transport::Sse => &self.endpoints_sse,
        }
    }

    pub fn resume(&self, hit: bool) {
        if hit { &self.resume_hits } else { &self.resume_misses }.increment(1);
    }

    /// The Prometheus text exposition, process metrics (RSS, CPU seconds) included. A
    /// histogram nothing was observed in yet is printed at zero (the exporter leaves it out), so
    /// a dashboard panel never points at a series that does not exist.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || self.process.collect());
        let mut text = self.handle.render();
        let ours: [(&str, &str, &Buckets); 6] = [
            ("gateway_delivery_latency_seconds", "transport=\"ws\"", &self.delivery_ws),
            ("gateway_delivery_latency_seconds", "transport=\"sse\"", &self.delivery_sse),
            ("gateway_turn_first_delta_seconds", "", &self.first_delta),
            ("gateway_resume_replay_events", "", &self.resume_replay),
            ("gateway_backplane_append_seconds", "", &self.append),
            ("gateway_store_write_seconds", "", &self.store_write),
        ];
        let mut last = "";
        for (name, labels, h) in ours {
            if name != last {
                let help = help::HELP.iter().find(|e| e.0 == name).map_or("", |e| e.2);
                let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} histogram");
                last = name;
            }
            h.render(&mut text, name, labels);
        }
        self.tenants.render(&mut text);
        for route in TIMED_ROUTES {
            for class in ["2xx", "4xx", "5xx"] {
                let labels = format!("route=\"{route}\",status_class=\"{class}\"");
                let name = "gateway_http_request_duration_seconds";
                if !text.contains(&format!("{name}_count{{{labels}}} ")) {
                    zero_histogram(&mut text, name, &labels, &LATENCY_BUCKETS);
                }
            }
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
