//! `loadtest`: drives the gateway as thousands of devices and one producer would, checks every
//! event against the protocol's promises, and reports latency, throughput and the gateway's
//! memory and CPU. It is a client only: it speaks the protocol through the `wire` crate and
//! never links the server.
//!
//! - [`scenario`]: what to run (defaults, TOML, flags); [`tokens`]: who to run it as;
//! - [`endpoint`]: one simulated device connection (WS or SSE, chaos, resume), [`dial`]led
//!   from one of several loopback addresses when asked;
//! - [`tasks`]: long tasks with artifact streams, followed over A2A with chaos resumes;
//! - [`producer`]: turns, deltas and notifications; [`storm`]: a notification storm against
//!   preferences; [`pushes`]: pushes to offline users, checked by the [`webhook`] receiver
//!   (signature, key, never twice); [`checker`]: the promises, checked;
//! - [`runner`]: one run → [`report::Report`]; [`bench`]: the standard scenarios;
//! - [`baseline`]: a bare tokio-tungstenite fan-out, the yardstick for saturated throughput;
//!   [`floor`]: the least server that carries the paced stream scenarios, the yardstick for CPU
//!   per delivered event;
//! - [`soak`]: minutes of chaos traffic through faults on a schedule, memory sampled ([`proxy`]
//!   takes the store away).

pub mod baseline;
pub mod bench;
pub mod checker;
pub mod ctx;
pub mod dial;
pub mod endpoint;
pub mod floor;
pub mod gateway_probe;
pub mod producer;
pub mod proxy;
pub mod pushes;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod soak;
pub mod stats;
pub mod storm;
pub mod tasks;
pub mod tokens;
pub mod webhook;
