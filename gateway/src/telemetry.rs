//! Logs and, when an OTLP endpoint is configured, distributed traces.
//!
//! Tracing is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set. Off, [`span`] is one relaxed atomic load returning `Span::none()`: no span is built,
//! no header parsed, nothing allocated on the hot path. On, the producer's W3C `traceparent`
//! becomes the parent of the request's span and is kept on the turn, so the spans of its later
//! requests, its publishes and its store write join the producer's trace. The exporter is the
//! `opentelemetry-otlp` batch exporter (OTLP over HTTP, protobuf by default,
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json` for JSON); the usual `OTEL_*` variables apply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of every span meant for the trace exporter (never for the log).
pub const TARGET: &str = "otel";

static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint was configured at start-up).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Keeps the exporter alive; dropping it flushes what is buffered and stops the exporter.
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("gateway: trace exporter shutdown: {e}");
        }
    }
}

/// Sets up logs (`GATEWAY_LOG`, text or JSON) and, when configured, the OTLP trace exporter.
pub fn init(json_logs: bool) -> Guard {
    let filter = EnvFilter::try_from_env("GATEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // The exporter's spans never reach the log.
    let filter = filter.add_directive(format!("{TARGET}=off").parse().expect("a valid directive"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match json_logs {
        true => fmt.json().with_filter(filter).boxed(),
        false => fmt.with_filter(filter).boxed(),
    };
    let provider = configured().then(provider).flatten();
    let otel = provider.as_ref().map(|p| {
        let only_ours =
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE);
        tracing_opentelemetry::layer().with_tracer(p.tracer("gateway")).with_filter(only_ours)
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        ON.store(true, Ordering::Relaxed);
        tracing::info!("traces are exported over OTLP");
    }
    Guard(provider)
}

fn configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

fn provider() -> Option<SdkTracerProvider> {
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("gateway: OTLP exporter not started, traces are off: {e}");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("gateway");
    }
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    )
}

/// A span of the exporter's, child of the current one; `Span::none()` when tracing is off.
#[macro_export]
macro_rules! otel_span {
    ($name:expr $(, $($field:tt)*)?) => {
        if $crate::telemetry::enabled() {
            tracing::info_span!(target: "otel", $name $(, $($field)*)?)
        } else {
            tracing::Span::none()
        }
    };
}

/// Parents `span` on a W3C `traceparent` (with its `tracestate`), if it is a valid one.
pub fn adopt(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(tp) = traceparent else { return };
    let mut carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
    if let Some(ts) = tracestate {
        carrier.insert("tracestate".into(), ts.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` a producer sent, when tracing is on and it is well formed.
pub fn traceparent(headers: &HeaderMap) -> Option<String> {
    if !enabled() {
        return None;
    }
    let tp = headers.get("traceparent")?.to_str().ok()?;
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid().then(|| tp.to_owned())
}

/// The span of a write request (reads and the long-lived WS/SSE requests have none), parented
/// on the producer's `traceparent`, else, for a turn's events, on the one kept on the turn.
pub fn http_span<B>(
    req: &axum::http::Request<B>,
    route: Option<&str>,
    turn_trace: impl Fn(&str) -> Option<String>,
) -> Span {
    if !enabled() || req.method() == axum::http::Method::GET {
        return Span::none();
    }
    let route = route.unwrap_or("other");
    let span = tracing::info_span!(
        target: "otel", "http", otel.name = format!("{} {route}", req.method()),
        http.route = route, http.request.method = %req.method()
    );
    let headers = req.headers();
    let state = headers.get("tracestate").and_then(|v| v.to_str().ok());
    match traceparent(headers) {
        Some(tp) => adopt(&span, Some(&tp), state),
        None if route == "/v1/turns/{turn_id}/events" => {
            let turn_id = req.uri().path().split('/').nth(3).unwrap_or("");
            adopt(&span, turn_trace(turn_id).as_deref(), None)
        }
        None => {}
    }
    span
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_cheap() {
        assert!(!enabled());
        let s = otel_span!("publish", seq = 1);
        assert!(s.is_none());
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
        );
        assert_eq!(traceparent(&h), None, "nothing parsed when off");
    }
}
