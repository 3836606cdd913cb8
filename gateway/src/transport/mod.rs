//! Client transports. Each endpoint is one task (WebSocket) or one response stream (SSE) that
//! owns its socket and reads its bounded queue from the hub; the two share admission
//! ([`params`]), the endpoint's lifetime ([`session`]) and the handling of client frames
//! ([`client`]).

pub mod client;
pub mod feed;
pub mod params;
pub mod session;
pub mod sse;
pub mod stall;
pub mod ws;
