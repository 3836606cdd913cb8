//! Wire types of the gateway protocol (`shared/PROTOCOL.md`, v1).
//!
//! Everything that crosses the wire between the gateway and its peers lives here, with no server
//! code, so a client (the load tester, a test, another team's tool) speaks exactly what the
//! gateway speaks by depending on this crate alone.
//!
//! - [`event`]: log events (the per-user ordered stream, each with a `seq`);
//! - [`frame`]: WebSocket control frames in both directions;
//! - [`api`]: HTTP request and response bodies of the producer, history and presence APIs;
//! - [`close`]: WebSocket close codes; [`sse`]: SSE framing and `Last-Event-ID`;
//! - [`task`]: tasks (v1.1): states, the task object, the producer's bodies;
//! - [`claims`]: the JWT claims the gateway reads (clients mint tokens with them).

pub mod api;
pub mod claims;
pub mod close;
pub mod event;
pub mod frame;
pub mod prefs;
pub mod sse;
pub mod task;

pub use api::{EndpointInfo, ErrorBody, ErrorDetail, Surface, Transport};
pub use claims::Claims;
pub use event::{EventBody, LogEvent, Priority, TurnStatus};
pub use frame::{ClientFrame, ControlFrame, ServerFrame};

/// The scope a producer token needs for the producer API.
pub const SCOPE_PUBLISH: &str = "gateway.publish";
/// The scope that reads any user's presence, turns and history.
pub const SCOPE_ADMIN: &str = "gateway.admin";
