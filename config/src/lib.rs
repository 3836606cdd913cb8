//! Gateway settings (PROTOCOL.md, "Running the gateway").
//!
//! Settings come from defaults, then an optional TOML file, then `GATEWAY_*` environment
//! variables. The sources are injected (a map in tests, the process environment in `main`) and
//! every bad value is collected, so an operator sees all their mistakes at once, each naming the
//! setting. The binary exits 64 (`EX_USAGE`) on any of them.

mod error;
mod genconfig;
mod parse;
mod settings;

pub use error::{ConfigError, ConfigErrors};
pub use genconfig::genconfig;
pub use settings::{Config, KeyAlgorithm, LogFormat, OriginPolicy, SETTINGS};

/// The exit code for bad configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: i32 = 64;
