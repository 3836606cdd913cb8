//! The figures of a run: a human table, JSON for scripts, an SVG of the latency curves.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::checker::Kind;
use crate::scenario::Scenario;
use crate::stats::Percentiles;

#[derive(Debug, Clone, Serialize, Default)]
pub struct GatewayFigures {
    pub rss_before: Option<u64>,
    pub rss_connected: Option<u64>,
    pub rss_after: Option<u64>,
    /// (RSS connected − RSS before) / endpoints.
    pub rss_per_endpoint_bytes: Option<f64>,
    /// Gateway CPU seconds over the load and settle window.
    pub cpu_seconds: Option<f64>,
    /// Gateway CPU per event delivered in that window, microseconds (every node together).
    pub cpu_us_per_event: Option<f64>,
    /// The kernel's part of it (system time), when read from /proc.
    pub system_us_per_event: Option<f64>,
    /// CPU of what the gateway relies on (redis-server) per delivered event, microseconds.
    pub backend_cpu_us_per_event: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub endpoints: u64,
    pub connected: u64,
    /// Every endpoint reached the newest seq the producer was told of.
    pub caught_up: bool,
    pub load_seconds: f64,
    pub window_seconds: f64,
    pub events: u64,
    pub events_per_second: f64,
    pub bytes_per_second: f64,
    pub published: u64,
    pub turns: u64,
    pub notifications: u64,
    /// Producer send → client receipt, per delta and notification.
    pub delivery: Percentiles,
    /// Turn start sent → first delta received.
    pub first_delta: Percentiles,
    /// Time between consecutive deltas of a turn at one client.
    pub gap: Percentiles,
    /// Time between the first and each later device of a user getting the same event.
    pub spread: Percentiles,
    pub connect: Percentiles,
    pub resume: Percentiles,
    pub http_errors: u64,
    pub connect_errors: u64,
    pub reconnects: u64,
    pub closes: BTreeMap<String, u64>,
    pub violations: BTreeMap<Kind, u64>,
    pub violations_total: u64,
    pub violation_examples: Vec<String>,
    pub burst_ms: Option<f64>,
    /// The drain of the first node → the last of its endpoints resumed elsewhere (and how many
    /// resumed after it).
    pub reconnect_storm: Option<(f64, u64)>,
    pub gateway: GatewayFigures,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

impl Report {
    /// Whether every promise held and nothing failed.
    pub fn clean(&self) -> bool {
        self.violations_total == 0 && self.caught_up && self.connected == self.endpoints
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "endpoints          {} ({} connected, {:.0}% SSE)",
            self.endpoints,
            self.connected,
            self.scenario.sse_ratio * 100.0
        );
        let _ = writeln!(
            s,
            "published          {} events ({} turns, {} notifications)",
            self.published, self.turns, self.notifications
        );
        let _ = writeln!(
            s,
            "delivered          {} events, {:.0}/s during load, {:.1} MB/s",
            self.events,
            self.events_per_second,
            self.bytes_per_second / 1e6
        );
        if let Some(b) = self.burst_ms {
            let _ = writeln!(s, "burst              last device had it after {b:.1} ms");
        }
        if let Some((ms, n)) = self.reconnect_storm {
            let _ = writeln!(
                s,
                "reconnect storm    node 0 drained: {n} endpoints resumed elsewhere, the last {ms:.0} ms after the drain"
            );
        }
        let _ =
            writeln!(s, "\nlatency (ms)        count      p50      p90      p99    p99.9      max");
        for (name, p) in self.latencies() {
            let _ = writeln!(
                s,
                "{name:<16} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
            );
        }
        let g = &self.gateway;
        let _ = writeln!(
            s,
            "\ngateway RSS        before {} MB, connected {} MB, after {} MB",
            opt(g.rss_before.map(|b| b / 1_000_000)),
            opt(g.rss_connected.map(|b| b / 1_000_000)),
            opt(g.rss_after.map(|b| b / 1_000_000))
        );
        let _ = writeln!(
            s,
            "memory/endpoint    {} bytes",
            opt(g.rss_per_endpoint_bytes.map(|b| b.round()))
        );
        let _ = writeln!(
            s,
            "gateway CPU        {} s, {} µs per delivered event",
            opt(g.cpu_seconds.map(|c| format!("{c:.2}"))),
            opt(g.cpu_us_per_event.map(|c| format!("{c:.2}")))
        );
        if let Some(k) = g.system_us_per_event {
            let _ = writeln!(s, "  of which kernel  {k:.2} µs per delivered event (system time)");
        }
        if let Some(b) = g.backend_cpu_us_per_event {
            let _ = writeln!(s, "backend CPU        {b:.2} µs per delivered event (redis-server)");
        }
        let _ = writeln!(
            s,
            "errors             http {}, connect {}, reconnects {}, closes {:?}",
            self.http_errors, self.connect_errors, self.reconnects, self.closes
        );
        let verdict = if self.clean() {
            "none".to_owned()
        } else {
            format!(
                "{} {:?}{}",
                self.violations_total,
                self.violations,
                if self.caught_up { "" } else { " (endpoints did not catch up)" }
            )
        };
        let _ = writeln!(s, "violations         {verdict}");
        for e in &self.violation_examples {
            let _ = writeln!(s, "  e.g. {e}");
        }
        s
    }

    pub fn latencies(&self) -> [(&'static str, &Percentiles); 6] {
        [
            ("delivery", &self.delivery),
            ("first delta", &self.first_delta),
            ("inter-delta gap", &self.gap),
            ("device spread", &self.spread),
            ("connect", &self.connect),
            ("resume", &self.resume),
        ]
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Latency percentile curves: x is the number of nines (0 = p0, 2 = p99, 3 = p99.9).
    pub fn plot(&self, path: &Path) -> anyhow::Result<()> {
        let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let series: Vec<_> =
            self.latencies().into_iter().filter(|(_, p)| !p.curve.is_empty()).collect();
        let y_max =
            series.iter().flat_map(|(_, p)| p.curve.iter().map(|c| c.1)).fold(1.0_f64, f64::max)
                * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("latency by percentile", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..5.0_f64, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("ms")
            .x_label_formatter(&|x| format!("{}%", 100.0 - 100.0 * 10f64.powf(-x)))
            .draw()?;
        for (i, (name, p)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(p.curve.iter().copied(), color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
        root.present()?;
        Ok(())
    }
}
