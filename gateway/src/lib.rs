//! The streaming gateway: JWT-authenticated WebSocket and SSE endpoints that stream each user's
//! ordered event log (assistant turns, notifications) to every device of that user, fed by a
//! producer HTTP API.
//!
//! - [`hub`]: per-user logs and the fan-out to live endpoints (the ordering guarantees);
//! - [`transport`]: the WebSocket and SSE endpoint tasks;
//! - [`api`]: HTTP routes (producer API, presence, operations);
//! - [`turns`], [`notifications`]: producer-side state (idempotency, cancel, dedup);
//! - [`auth`]: token verification; [`metrics`]: the Prometheus registry;
//! - [`server`]: serving and the drain sequence; [`state`]: what every handler shares.
//!
//! Presence lives in the `presence` crate, settings in `config`, wire types in `wire`.

pub mod api;
pub mod auth;
pub mod error;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod notifications;
pub mod server;
pub mod state;
pub mod transport;
pub mod turns;

pub use state::AppState;
