//! What a soak records as it goes: each node's memory and descriptors and the outbox depth,
//! sampled every few seconds, written as CSV, drawn, and summed up in the run's README.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plotters::prelude::*;
use tokio::process::Child;
use tokio::time::Instant;

use super::{Fleet, SoakArgs};

/// One sample: minutes since the start, then per node RSS (MiB) and open descriptors, then the
/// outbox depth.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) minute: f64,
    pub(super) rss: [f64; 2],
    pub(super) fds: [f64; 2],
    pub(super) outbox: f64,
}

pub(super) async fn sample_every(
    fleet: Arc<Mutex<Fleet>>,
    out: Arc<Mutex<Vec<Sample>>>,
    started: Instant,
) {
    let http = reqwest::Client::new();
    loop {
        let (pids, listen) = {
            let f = fleet.lock();
            (f.nodes.each_ref().map(|n| n.as_ref().and_then(Child::id)), f.listen.clone())
        };
        let mut s = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss: [0.0; 2],
            fds: [0.0; 2],
            outbox: f64::NAN,
        };
        for i in 0..2 {
            if let Some(pid) = pids[i] {
                s.rss[i] = rss_mib(pid);
                s.fds[i] =
                    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
            }
            if s.outbox.is_nan() {
                s.outbox = outbox_depth(&http, &listen[i]).await.unwrap_or(f64::NAN);
            }
        }
        out.lock().push(s);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn outbox_depth(http: &reqwest::Client, listen: &str) -> Option<f64> {
    let text = http.get(format!("http://{listen}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("gateway_outbox_depth "))
        .and_then(|v| v.trim().parse().ok())
}

pub(super) fn write_csv(path: &std::path::Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut text =
        String::from("minute,rss_mib_node0,rss_mib_node1,fds_node0,fds_node1,outbox_depth\n");
    for s in samples {
        text.push_str(&format!(
            "{:.2},{:.1},{:.1},{},{},{}\n",
            s.minute, s.rss[0], s.rss[1], s.fds[0], s.fds[1], s.outbox
        ));
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Three panels over time: RSS per node, descriptors per node, outbox depth.
pub(super) fn plot(path: &std::path::Path, samples: &[Sample]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let end = samples.last().map_or(1.0, |s| s.minute.max(0.1));
    type Pick = fn(&Sample) -> [f64; 2];
    let rows: [(&str, Pick); 3] = [
        ("RSS (MiB) per node", |s| s.rss),
        ("open descriptors per node", |s| s.fds),
        ("outbox depth", |s| [s.outbox, f64::NAN]),
    ];
    for (panel, (title, pick)) in panels.iter().zip(rows) {
        let top = samples.iter().flat_map(&pick).filter(|v| v.is_finite()).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, 0.0..top * 1.15)?;
        chart.configure_mesh().x_desc("minutes").draw()?;
        for node in 0..2 {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .map(|s| (s.minute, pick(s)[node]))
                .filter(|p| p.1.is_finite())
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = Palette99::pick(node).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("node {node}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

pub(super) fn summary(
    args: &SoakArgs,
    report: &crate::report::Report,
    samples: &[Sample],
    events: &[(f64, String)],
) -> String {
    let mut s = format!(
        "# Soak: {} min, {} users × 2 devices (¼ SSE), two Redis-mode nodes, PostgreSQL store\n\n\
         Command: `loadtest soak --minutes {}` (release build). Samples: `soak.csv`; plot: `soak.svg`.\n\n\
         ## Faults\n\n",
        args.minutes, args.users, args.minutes
    );
    for (minute, what) in events {
        s.push_str(&format!("- minute {minute:.1}: {what}\n"));
    }
    let third = samples.len() / 3;
    let mean =
        |xs: &[Sample], i: usize| xs.iter().map(|x| x.rss[i]).sum::<f64>() / xs.len().max(1) as f64;
    if third > 0 {
        let (first, last) = (&samples[..third], &samples[samples.len() - third..]);
        s.push_str(&format!(
            "\n## Memory\n\nMean RSS, first third → last third of the run: node 0 {:.1} → {:.1} MiB, \
             node 1 {:.1} → {:.1} MiB.\nDescriptors at the end: {} and {}. Largest outbox depth: {}.\n",
            mean(first, 0),
            mean(last, 0),
            mean(first, 1),
            mean(last, 1),
            samples.last().map_or(0.0, |x| x.fds[0]),
            samples.last().map_or(0.0, |x| x.fds[1]),
            samples.iter().map(|x| x.outbox).filter(|v| v.is_finite()).fold(0.0, f64::max),
        ));
    }
    s.push_str(&format!(
        "\n## Checked\n\nEvents {}; turns {}; notifications {}; reconnects {}; violations {} {:?}; \
         caught up: {}.\n",
        report.events,
        report.turns,
        report.notifications,
        report.reconnects,
        report.violations_total,
        report.violations,
        report.caught_up
    ));
    s
}
