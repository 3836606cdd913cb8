//! The Markdown `loadtest bench` writes: a table per scenario (a column per target, with the CPU
//! ratios to the floor and to the Node peer), and the saturation comparison.

use super::{BenchArgs, FLOOR, ScenarioResults};
use crate::report::Report;

/// A table row: its label, and how to read it off a report.
type Line = (&'static str, Box<dyn Fn(&Report) -> String>);

pub(super) fn baseline_section(bare: f64, connections: usize, row: &[(&str, Report)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "## saturation vs a bare tokio-tungstenite fan-out\n");
    let _ = writeln!(
        s,
        "`loadtest baseline`: a bare tokio-tungstenite server (its own process) fans the same frames"
    );
    let _ = writeln!(
        s,
        "out to {connections} connections, no auth, log or producer API; its clients do the same per-event"
    );
    let _ = writeln!(
        s,
        "checking as the load tester's. The gateway also ingests every event over HTTP from the same"
    );
    let _ = writeln!(s, "load process, so the ratio includes the producer side.\n");
    let _ = writeln!(s, "| server | deliveries/s | ratio to bare |\n|---|---|---|");
    let _ = writeln!(s, "| bare tokio-tungstenite fan-out | {bare:.0} | 1.00 |");
    for (t, r) in row {
        let _ =
            writeln!(s, "| {t} | {:.0} | {:.2} |", r.events_per_second, r.events_per_second / bare);
    }
    s
}

pub(super) fn markdown(results: &[ScenarioResults], args: &BenchArgs) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `loadtest bench` (scale {}, {} s of load per streaming scenario). The gateway and the load",
        args.scale, args.duration
    );
    let _ = writeln!(
        s,
        "generator share one 2-core machine, so every figure includes the cost of the client: compare"
    );
    let _ = writeln!(
        s,
        "the columns of one run, not runs of different days. CPU and memory are read from the gateway's"
    );
    let _ = writeln!(
        s,
        "/proc entry; memory per endpoint is (RSS connected − RSS before) / endpoints.\n"
    );
    for (name, about, row) in results {
        let _ = writeln!(s, "## {name}\n\n{about}\n");
        let _ = write!(s, "| figure |");
        for (t, _) in row {
            let _ = write!(s, " {t} |");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "|---|{}", "---|".repeat(row.len()));
        let f = |v: Option<f64>, d: usize| v.map_or("n/a".to_owned(), |v| format!("{v:.d$}"));
        let lines: Vec<Line> = vec![
            (
                "endpoints connected",
                Box::new(|r: &Report| format!("{} / {}", r.connected, r.endpoints)),
            ),
            ("events delivered/s", Box::new(|r: &Report| format!("{:.0}", r.events_per_second))),
            (
                "delivery p50 / p99 / p99.9 ms",
                Box::new(|r: &Report| {
                    format!(
                        "{:.2} / {:.2} / {:.2}",
                        r.delivery.p50_ms, r.delivery.p99_ms, r.delivery.p999_ms
                    )
                }),
            ),
            ("first delta p99 ms", Box::new(|r: &Report| format!("{:.2}", r.first_delta.p99_ms))),
            ("device spread p99 ms", Box::new(|r: &Report| format!("{:.2}", r.spread.p99_ms))),
            ("resume p99 ms", Box::new(|r: &Report| format!("{:.2}", r.resume.p99_ms))),
            ("burst: last device ms", Box::new(move |r: &Report| f(r.burst_ms, 1))),
            (
                "drain → last endpoint resumed elsewhere ms (endpoints)",
                Box::new(|r: &Report| {
                    r.reconnect_storm.map_or("n/a".into(), |(ms, n)| format!("{ms:.0} ({n})"))
                }),
            ),
            (
                "closes by code (server-sent)",
                Box::new(|r: &Report| {
                    let c: Vec<String> =
                        r.closes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    if c.is_empty() { "none".into() } else { c.join(", ") }
                }),
            ),
            (
                "memory per endpoint (bytes)",
                Box::new(move |r: &Report| f(r.gateway.rss_per_endpoint_bytes, 0)),
            ),
            (
                "gateway CPU µs per delivered event (all nodes)",
                Box::new(move |r: &Report| f(r.gateway.cpu_us_per_event, 2)),
            ),
            (
                "of which the gateway's kernel time",
                Box::new(move |r: &Report| f(r.gateway.system_us_per_event, 2)),
            ),
            (
                "redis-server CPU µs per delivered event",
                Box::new(move |r: &Report| f(r.gateway.backend_cpu_us_per_event, 2)),
            ),
            (
                "lost / duplicated / reordered / other",
                Box::new(|r: &Report| {
                    let g = |k| r.violations.get(&k).copied().unwrap_or(0);
                    use crate::checker::Kind::*;
                    format!(
                        "{} / {} / {} / {}",
                        g(Lost),
                        g(Duplicate),
                        g(Reordered),
                        r.violations_total - g(Lost) - g(Duplicate) - g(Reordered)
                    )
                }),
            ),
            ("all caught up", Box::new(|r: &Report| r.caught_up.to_string())),
        ];
        for (label, get) in &lines {
            let _ = write!(s, "| {label} |");
            for (_, r) in row {
                let _ = write!(s, " {} |", get(r));
            }
            let _ = writeln!(s);
        }
        for (label, of) in [
            ("CPU per delivered event ÷ the floor's", FLOOR),
            ("CPU per delivered event ÷ the Node peer's", "node peer"),
        ] {
            let Some(base) =
                row.iter().find(|(t, _)| *t == of).and_then(|(_, r)| r.gateway.cpu_us_per_event)
            else {
                continue;
            };
            let _ = write!(s, "| {label} |");
            for (_, r) in row {
                let _ = write!(s, " {} |", f(r.gateway.cpu_us_per_event.map(|c| c / base), 2));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }
    s
}
