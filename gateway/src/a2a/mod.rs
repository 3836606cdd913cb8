//! The A2A v1.0 binding (PROTOCOL.md v1.1, §A2A binding): another agent, or any A2A client,
//! follows a user's tasks and turns with the user's token.
//!
//! - [`card`]: the Agent Card at `/.well-known/agent-card.json`;
//! - [`rpc`]: `POST /a2a`, the JSON-RPC envelope, errors and the request/response methods;
//! - [`subscribe`]: `SubscribeToTask` as SSE read from the user's log, resumable by
//!   `Last-Event-ID`;
//! - [`forward`]: `SendMessage` / `SendStreamingMessage` handed to the configured agent;
//! - [`model`]: tasks, turns and log events as A2A objects.

pub mod card;
mod forward;
pub mod model;
pub mod rpc;
mod subscribe;

use std::time::Duration;

/// What the binding is configured with.
pub struct A2a {
    /// Where `SendMessage` goes (`None`: -32004).
    pub agent_url: Option<String>,
    /// The gateway's public base URL (`None`: from the request's `Host`).
    pub public_url: Option<String>,
    pub name: String,
    pub description: String,
    /// A JSON array of AgentSkill objects (checked when the setting was read).
    pub skills: serde_json::Value,
    http: reqwest::Client,
}

/// How long the agent has to answer a forwarded message.
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

impl A2a {
    pub fn from_config(cfg: &config::Config) -> A2a {
        let http = reqwest::Client::builder().timeout(AGENT_TIMEOUT).build().unwrap_or_default();
        A2a {
            agent_url: cfg.a2a_agent_url.clone(),
            public_url: cfg.public_url.clone(),
            name: cfg.a2a_name.clone(),
            description: cfg.a2a_description.clone(),
            skills: serde_json::from_str(&cfg.a2a_skills).unwrap_or_else(|_| serde_json::json!([])),
            http,
        }
    }
}
