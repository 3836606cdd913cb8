//! A fixed-bucket histogram for the hot path: one relaxed atomic add per observation (and one
//! for the sum), nothing kept per sample, rendered as a Prometheus histogram. The exporter's own
//! histograms keep every sample until they are folded, which costs more per delivered event
//! than a counter; request durations (one per HTTP request) still use them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Buckets {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Buckets {
    pub fn new(bounds: &'static [f64]) -> Buckets {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Buckets { bounds, counts, sum_nanos: AtomicU64::new(0) }
    }

    pub fn record(&self, value: f64) {
        let at = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add((value.max(0.0) * 1e9) as u64, Ordering::Relaxed);
    }

    /// The samples of one series (`labels` without braces, may be empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_sum_and_count() {
        let h = Buckets::new(&[0.001, 0.01]);
        for v in [0.0005, 0.001, 0.005, 3.0] {
            h.record(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "t=\"ws\"");
        assert_eq!(
            out,
            "x_bucket{t=\"ws\",le=\"0.001\"} 2\nx_bucket{t=\"ws\",le=\"0.01\"} 3\n\
             x_bucket{t=\"ws\",le=\"+Inf\"} 4\nx_sum{t=\"ws\"} 3.0065\nx_count{t=\"ws\"} 4\n"
        );
    }
}
