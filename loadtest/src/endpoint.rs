//! One simulated endpoint (a device's connection), across its reconnects: connects over
//! WebSocket or SSE, feeds every event to its checker, records latencies, and under chaos drops
//! its connection at random and resumes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio::time::{sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wire::{ControlFrame, EventBody, LogEvent, ServerFrame};

use crate::checker::{self, EndpointCheck};
use crate::ctx::SharedCtx;
use crate::stats::Stats;

/// How a connection ended.
enum Outcome {
    Stopped,
    /// Dropped on purpose (chaos).
    Dropped,
    Closed(Option<u16>),
    ConnectFailed,
}

/// Per-turn timing at this endpoint: when the producer started it, when the last delta came.
#[derive(Default)]
struct Timing {
    t0_us: Option<u64>,
    last: Option<Instant>,
}

struct Endpoint {
    ctx: SharedCtx,
    idx: usize,
    /// Connection attempts so far: each goes to the next node (a resume crosses nodes).
    attempts: usize,
    check: EndpointCheck,
    timing: HashMap<String, Timing>,
}

pub async fn run(ctx: SharedCtx, idx: usize) -> EndpointCheck {
    let user = ctx.user_of(idx);
    let check = EndpointCheck::new(user, ctx.violations.clone(), ctx.ledger.clone());
    let mut ep = Endpoint { ctx: ctx.clone(), idx, attempts: 0, check, timing: HashMap::new() };
    let token = match ctx.tokens.user(user) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("endpoint {idx}: {e}");
            return ep.check;
        }
    };
    let sse = ctx.is_sse(idx);
    let mut connected_once = false;
    while !ctx.stop.is_cancelled() {
        let resume = if connected_once { ep.check.resume_point() } else { None };
        ep.attempts += 1;
        let outcome = if sse {
            ep.sse(&token, resume, &mut connected_once).await
        } else {
            ep.ws(&token, resume, &mut connected_once).await
        };
        match outcome {
            Outcome::Stopped => break,
            Outcome::Dropped => Stats::add(&ctx.stats.reconnects, 1),
            Outcome::Closed(code) => {
                ctx.stats.close(code);
                Stats::add(&ctx.stats.reconnects, 1);
                sleep(Duration::from_millis(50)).await;
            }
            Outcome::ConnectFailed => {
                Stats::add(&ctx.stats.connect_errors, 1);
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
    ep.check.finish();
    ep.check
}

impl Endpoint {
    fn chaos_deadline(&self) -> Option<tokio::time::Instant> {
        let rate = self.ctx.scenario.chaos_rate;
        if rate <= 0.0 {
            return None;
        }
        // Exponential inter-drop times: on average `rate` of the endpoints drop per second.
        let u: f64 = rand::rng().random_range(f64::EPSILON..1.0);
        Some(tokio::time::Instant::now() + Duration::from_secs_f64(-u.ln() / rate))
    }

    fn on_hello(
        &mut self,
        hello: ControlFrame,
        resume: &Option<(String, u64)>,
        started: Instant,
        connected_once: &mut bool,
    ) {
        if let ControlFrame::Hello { epoch, seq, resumed, .. } = hello {
            self.check.on_hello(&epoch, seq, resumed, resume.is_some());
        }
        let took = started.elapsed().as_micros() as u64;
        if *connected_once {
            self.ctx.stats.resume.record(self.idx, took);
            self.ctx.stats.last_resume_us.fetch_max(self.ctx.now_us(), Ordering::Relaxed);
        } else {
            self.ctx.stats.connect.record(self.idx, took);
            self.ctx.connected.fetch_add(1, Ordering::Relaxed);
            *connected_once = true;
        }
        self.ctx.progress[self.idx].store(self.check.next, Ordering::Relaxed);
    }

    /// One log event as received (`raw` is its JSON text).
    fn on_event(&mut self, ev: LogEvent, raw: &str) {
        let ctx = &self.ctx;
        let now = Instant::now();
        Stats::add(&ctx.stats.events, 1);
        Stats::add(&ctx.stats.bytes, raw.len() as u64);
        let seen = self.check.on_event(&ev, checker::hash(raw), now);
        if seen.fresh {
            if let Some(s) = seen.spread {
                ctx.stats.spread.record(self.idx, s.as_micros() as u64);
            }
            let now_us = ctx.now_us();
            match ev.body {
                EventBody::TurnStart { turn_id, meta, .. } => {
                    let t0_us = meta.as_ref().and_then(|m| m.get("t0_us")).and_then(|v| v.as_u64());
                    self.timing.insert(turn_id, Timing { t0_us, last: None });
                }
                EventBody::TurnDelta { turn_id, index, text } => {
                    if let Some(sent) = text.get(..12).and_then(|t| t.parse::<u64>().ok()) {
                        ctx.stats.delivery.record(self.idx, now_us.saturating_sub(sent));
                    }
                    if let Some(t) = self.timing.get_mut(&turn_id) {
                        if index == 0
                            && let Some(t0) = t.t0_us
                        {
                            ctx.stats.first_delta.record(self.idx, now_us.saturating_sub(t0));
                        }
                        if let Some(last) = t.last {
                            ctx.stats
                                .gap
                                .record(self.idx, now.duration_since(last).as_micros() as u64);
                        }
                        t.last = Some(now);
                    }
                }
                EventBody::TurnEnd { turn_id, .. } => {
                    self.timing.remove(&turn_id);
                }
                EventBody::Notification { data, .. } => {
                    if let Some(sent) = data.get("sent_us").and_then(|v| v.as_u64()) {
                        ctx.stats.delivery.record(self.idx, now_us.saturating_sub(sent));
                    }
                }
                EventBody::TaskArtifact { parts, .. } => {
                    // The tasks scenario's chunks start with the time they were sent.
                    let sent = match parts.first() {
                        Some(wire::task::Part::Text { text }) => text.get(..12),
                        _ => None,
                    };
                    if let Some(sent) = sent.and_then(|t| t.parse::<u64>().ok()) {
                        ctx.stats.delivery.record(self.idx, now_us.saturating_sub(sent));
                    }
                }
                EventBody::TurnTrace { .. }
                | EventBody::TaskStatus { .. }
                | EventBody::NotificationRead { .. }
                | EventBody::NotificationState { .. }
                | EventBody::NotificationDigest { .. } => {}
            }
        }
        ctx.progress[self.idx].store(self.check.next, Ordering::Relaxed);
    }

    async fn ws(
        &mut self,
        token: &str,
        resume: Option<(String, u64)>,
        connected_once: &mut bool,
    ) -> Outcome {
        let ctx = self.ctx.clone();
        let mut url = format!(
            "{}/v1/ws?access_token={token}&device_id=ld{}&surface=web",
            ctx.ws_base(self.idx + self.attempts),
            self.idx
        );
        if let Some((e, a)) = &resume {
            url.push_str(&format!("&epoch={e}&after={a}"));
        }
        let started = Instant::now();
        // Small read buffers: thousands of these live in one process.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0);
        let from = crate::dial::source(self.idx, ctx.scenario.source_addresses);
        let connect = crate::dial::connect(&url, config, from);
        let mut ws = match timeout(Duration::from_secs(15), connect).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => {
                Stats::add(&ctx.stats.http_errors, 1);
                ctx.stats.close(Some(r.status().as_u16()));
                return Outcome::ConnectFailed;
            }
            _ => return Outcome::ConnectFailed,
        };
        let hello = match timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match ServerFrame::parse(t.as_str()) {
                Ok(ServerFrame::Control(h @ ControlFrame::Hello { .. })) => h,
                _ => return Outcome::Closed(None),
            },
            _ => return Outcome::ConnectFailed,
        };
        self.on_hello(hello, &resume, started, connected_once);
        let chaos = self.chaos_deadline();
        loop {
            tokio::select! {
                _ = ctx.stop.cancelled() => {
                    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                    return Outcome::Stopped;
                }
                _ = sleep_until(chaos.unwrap_or_else(far_future)), if chaos.is_some() => return Outcome::Dropped,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(ServerFrame::Event(ev)) = ServerFrame::parse(t.as_str()) {
                            self.on_event(ev, t.as_str());
                        }
                    }
                    Some(Ok(Message::Close(f))) => return Outcome::Closed(f.map(|f| f.code.into())),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Outcome::Closed(None),
                }
            }
        }
    }

    async fn sse(
        &mut self,
        token: &str,
        resume: Option<(String, u64)>,
        connected_once: &mut bool,
    ) -> Outcome {
        let ctx = self.ctx.clone();
        let base = ctx.base(self.idx + self.attempts);
        let url =
            format!("{base}/v1/sse?access_token={token}&device_id=ld{}&surface=teams", self.idx);
        let mut req = ctx.http.get(url);
        if let Some((e, a)) = &resume {
            req = req.header("last-event-id", format!("{e}:{a}"));
        }
        let started = Instant::now();
        let resp = match timeout(Duration::from_secs(15), req.send()).await {
            Ok(Ok(r)) if r.status().is_success() => r,
            Ok(Ok(r)) => {
                Stats::add(&ctx.stats.http_errors, 1);
                ctx.stats.close(Some(r.status().as_u16()));
                return Outcome::ConnectFailed;
            }
            _ => return Outcome::ConnectFailed,
        };
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut hello_seen = false;
        let chaos = self.chaos_deadline();
        loop {
            // Handle every complete event in the buffer.
            while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..pos + 2).collect();
                let Ok(block) = std::str::from_utf8(&block) else { continue };
                let (mut event, mut data) = ("message", None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                let Some(data) = data else { continue };
                match event {
                    "hello" => {
                        if let Ok(h) = serde_json::from_str::<ControlFrame>(data) {
                            self.on_hello(h, &resume, started, connected_once);
                            hello_seen = true;
                        }
                    }
                    "reconnect" => {}
                    _ => {
                        if let Ok(ev) = serde_json::from_str::<LogEvent>(data) {
                            self.on_event(ev, data);
                        }
                    }
                }
            }
            tokio::select! {
                _ = ctx.stop.cancelled() => return Outcome::Stopped,
                _ = sleep_until(chaos.unwrap_or_else(far_future)), if chaos.is_some() && hello_seen => return Outcome::Dropped,
                chunk = body.next() => match chunk {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    _ => return if hello_seen { Outcome::Closed(None) } else { Outcome::ConnectFailed },
                }
            }
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}
