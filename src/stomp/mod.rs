//! STOMP 1.0, 1.1 and 1.2 on the wire: the frame type, an incremental parser that never
//! consumes a partial frame, and an encoder with per-version header escaping.
//!
//! The parser and the encoder know nothing of sessions or sockets; `session` drives them.

mod encode;
mod frame;
mod parse;

pub use encode::{encode_frame, escape_into, needs_escaping};
pub use frame::{Command, Frame, Version};
pub use parse::{Extent, Framer, Limits, ParseError, Parsed, parse};

#[cfg(test)]
mod tests;
