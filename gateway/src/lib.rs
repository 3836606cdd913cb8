//! The streaming gateway: JWT-authenticated WebSocket and SSE endpoints that stream each user's
//! ordered event log (assistant turns, notifications) to every device of that user, fed by a
//! producer HTTP API.
//!
//! - [`hub`]: this node's live endpoints by user, and the fan-out to them (in embedded mode
//!   also the per-user logs, with the ordering guarantees);
//! - [`backplane`]: the per-user logs with their conditional appends and records, in process or
//!   shared through Redis (no domain rule);
//! - [`domain`]: turns, notifications and tasks, every rule once, over the backplane;
//! - [`transport`]: the WebSocket and SSE endpoint tasks;
//! - [`api`]: HTTP routes (producer API, tasks, history, presence, operations);
//! - [`a2a`]: the A2A v1.0 binding over tasks and turns (Agent Card, JSON-RPC, resumable SSE);
//! - [`telemetry`]: logs, and OTLP traces of producer requests when configured;
//! - [`auth`]: token verification; [`audit`]: the audit trail of operator actions; [`metrics`]: the Prometheus registry;
//! - [`push`]: calls to the push webhook, from the store's push outbox;
//! - [`accept`]: accepting connections within their caps and timeouts;
//! - [`setup`]: the parts of a mode, from settings; [`server`]: serving, background tasks and
//!   the drain sequence; [`state`]: what every handler shares.
//!
//! Presence lives in the `presence` crate, the turn store and its outbox in `store-client`,
//! settings in `config`, wire types in `wire`.

pub mod a2a;
pub mod accept;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backplane;
pub mod domain;
pub mod error;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod push;
pub mod server;
pub mod setup;
pub mod state;
pub mod telemetry;
pub mod transport;

pub use state::AppState;
