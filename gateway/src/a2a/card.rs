//! `GET /.well-known/agent-card.json` (no token): what this gateway serves over A2A, with the
//! deployment's own fields from configuration.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::HOST;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let a = &state.a2a;
    let base = match &a.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    Json(json!({
        "name": a.name,
        "description": a.description,
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [{
            "url": format!("{base}/a2a"),
            "protocolBinding": "JSONRPC",
            "protocolVersion": "1.0",
        }],
        "capabilities": {"streaming": true, "pushNotifications": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": a.skills,
        "securitySchemes": {
            "bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer", "bearerFormat": "JWT"}},
        },
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
    }))
}
