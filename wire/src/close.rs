//! WebSocket close codes the gateway uses (PROTOCOL.md, "Errors").

/// A framing error (RSV bits, an unmasked client frame, a bad opcode): RFC 6455 §7.4.1.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame that is not UTF-8: RFC 6455 §7.4.1.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy violation: too many bad frames, or an `Origin` that is not allowed.
pub const POLICY: u16 = 1008;
/// A client frame larger than `GATEWAY_MAX_FRAME_BYTES`.
pub const TOO_LARGE: u16 = 1009;
/// The server is draining: reconnect (elsewhere) and resume.
pub const DRAINING: u16 = 1012;
/// The connection's token expired without an `auth.refresh`.
pub const TOKEN_EXPIRED: u16 = 4001;
/// The client fell too far behind; it reconnects and resumes from the log, losing nothing.
pub const SLOW_CONSUMER: u16 = 4008;
/// A normal close (the gateway sends it when the peer closes first).
pub const NORMAL: u16 = 1000;
