//! Client transports. Each endpoint is one task (WebSocket) or one response stream (SSE) that
//! owns its socket and reads its bounded queue from the hub; the two share admission
//! ([`params`]), the endpoint's lifetime ([`session`]) and the handling of client frames
//! ([`client`]). A WebSocket's socket is shared with the publishers ([`wire`]): while the
//! endpoint is caught up they write its events themselves, without waking its task.

pub mod client;
pub mod feed;
pub mod params;
pub mod session;
pub mod sse;
pub mod stall;
pub mod upgrade;
pub mod wire;
pub mod ws;
mod ws_start;
