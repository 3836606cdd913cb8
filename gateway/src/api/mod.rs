//! HTTP routes: client endpoints (`/v1/ws`, `/v1/sse`), the producer API, history, presence,
//! operations.

mod admin;
mod demo;
mod extract;
mod history;
mod inbox;
mod items;
mod ndjson;
mod ops;
mod preferences;
mod presence;
mod producer;
mod tasks;

pub use crate::auth::Authenticated;
pub use extract::{read_body, read_json};
pub use items::parse_item;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::routing::{get, post};
use config::OriginPolicy;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::transport;

/// Observes each matched request's duration (to its response head) by route template and
/// status class: `gateway_http_request_duration_seconds`; when traces are exported, runs a
/// write request in a span that joins the producer's trace (or its turn's).
async fn timed(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let span = crate::telemetry::http_span(&req, route.as_deref(), |id| state.turns.trace_of(id));
    let started = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(req), span).await;
    let route = route.as_deref().unwrap_or("other");
    state.metrics.http_request(route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// The gateway's router; `main` and tests serve it on any listener.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/ws", get(transport::ws::handler))
        .route("/v1/sse", get(transport::sse::handler))
        .route("/v1/turns", post(producer::create_turn))
        .route("/v1/turns/{turn_id}", get(producer::get_turn))
        .route("/v1/turns/{turn_id}/events", post(producer::turn_events))
        .route("/v1/notifications", post(producer::notify))
        .route("/a2a", post(crate::a2a::rpc::handler))
        .route("/v1/tasks", post(tasks::create).get(tasks::list))
        .route("/v1/tasks/{task_id}", get(tasks::get))
        .route("/v1/tasks/{task_id}/events", post(tasks::events))
        .route("/v1/tasks/{task_id}/cancel", post(tasks::cancel))
        .route("/v1/users/{user_id}/presence", get(presence::get_presence))
        .route("/v1/users/{user_id}/notifications", get(inbox::page))
        .route("/v1/users/{user_id}/notifications/mark", post(inbox::mark))
        .route(
            "/v1/users/{user_id}/preferences",
            get(preferences::get).put(preferences::put).patch(preferences::patch),
        )
        .route("/v1/conversations/{conversation_id}/turns", get(history::page))
        .route("/v1/conversations/{conversation_id}", axum::routing::delete(history::delete))
        .route("/v1/turns/{turn_id}/traces", get(history::traces))
        .route("/v1/admin/outbox/set-aside", get(admin::set_aside))
        .route("/v1/admin/outbox/set-aside/retry", post(admin::retry_set_aside))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(&state.origins));
    let v1 = match state.dev_secret.is_some() {
        true => v1.merge(demo::routes()),
        false => v1,
    };
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/.well-known/agent-card.json", get(crate::a2a::card::handler))
        .merge(v1)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), timed))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Answers are per user (errors included): never cached by a browser or a proxy, never
        // sniffed into another type. A route that sets its own Cache-Control (SSE) keeps it.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

/// CORS for browsers on an allowed origin (`GATEWAY_ALLOWED_ORIGINS`): EventSource and `fetch`
/// of the REST API from another origin, preflight included. Tokens travel in `Authorization`
/// or the query, never in cookies, so credentials are not allowed.
fn cors(origins: &OriginPolicy) -> CorsLayer {
    let policy = origins.clone();
    let allow = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        origin.to_str().is_ok_and(|o| policy.allows(Some(o)))
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
