//! Measurements: HDR histograms (microseconds) and counters, shared by every endpoint task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

/// A histogram split in shards so endpoint tasks on different threads rarely contend.
pub struct Hist {
    shards: Vec<Mutex<Histogram<u64>>>,
}

const SHARDS: usize = 16;

impl Default for Hist {
    fn default() -> Self {
        // 1 µs .. 1 hour, 3 significant figures.
        let h = || {
            Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"))
        };
        Hist { shards: (0..SHARDS).map(|_| h()).collect() }
    }
}

impl Hist {
    pub fn record(&self, key: usize, micros: u64) {
        let _ = self.shards[key % SHARDS].lock().record(micros.max(1));
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        for s in &self.shards {
            let _ = all.add(&*s.lock());
        }
        all
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// (percentile, ms) points for plotting.
    #[serde(skip)]
    pub curve: Vec<(f64, f64)>,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let mut curve = Vec::new();
        if !h.is_empty() {
            // Percentiles on a log scale of 1/(1-q): 0, 90, 99, 99.9, 99.99 …
            let mut x = 0.0_f64;
            while x <= 5.0 {
                let q = 1.0 - 10f64.powf(-x);
                curve.push((x, ms(q)));
                x += 0.05;
            }
        }
        Percentiles {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            curve,
        }
    }
}

/// Everything endpoint and producer tasks record.
#[derive(Default)]
pub struct Stats {
    pub connect: Hist,
    pub first_delta: Hist,
    pub delivery: Hist,
    pub gap: Hist,
    pub spread: Hist,
    pub resume: Hist,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub http_errors: AtomicU64,
    pub connect_errors: AtomicU64,
    pub reconnects: AtomicU64,
    pub published: AtomicU64,
    pub turns_started: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub closes: Mutex<BTreeMap<String, u64>>,
    /// When (µs into the run) the latest resumed `hello` arrived: the end of a reconnect storm.
    pub last_resume_us: AtomicU64,
}

impl Stats {
    /// Resumed `hello`s so far.
    pub fn resume_count(&self) -> u64 {
        self.resume.merged().len()
    }

    pub fn close(&self, code: Option<u16>) {
        let key = code.map_or("none".to_owned(), |c| c.to_string());
        *self.closes.lock().entry(key).or_default() += 1;
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
