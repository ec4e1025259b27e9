//! Incremental frame parser.
//!
//! `parse` looks at the front of a read buffer. When a whole frame is there it removes
//! exactly that frame and returns it; when only part of one is there it returns `Ok(None)`
//! and consumes nothing, so the caller reads more and calls again. A partial frame is an
//! expected runtime condition, not an error.

use super::frame::{Command, Frame, Version};
use bytes::{Buf, BytesMut};
use thiserror::Error;

/// Bounds that protect the gateway from hostile or broken clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted (default 64 KiB).
    pub max_body_bytes: usize,
    /// Most headers in one frame (default 32).
    pub max_headers: usize,
    /// Longest command or header line, in bytes (default 4 KiB).
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_headers: 32,
            max_header_line: 4096,
        }
    }
}

/// What the front of the buffer held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame.
    Frame(Frame),
    /// One or more end-of-line bytes between frames: a heart-beat.
    Heartbeat,
}

/// A frame that can never become valid, however many bytes follow. The connection must
/// answer with an ERROR frame and close.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The command line names no STOMP command.
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    /// A header line without a colon.
    #[error("malformed header line (no ':'): '{0}'")]
    MalformedHeader(String),
    /// An escape sequence the version does not define (for example `\t`).
    #[error("invalid escape sequence '\\{0}' in header")]
    BadEscape(char),
    /// Header names and values must be UTF-8.
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    /// `content-length` is not a non-negative integer.
    #[error("invalid content-length '{0}'")]
    BadContentLength(String),
    /// The byte after a `content-length` body is not NUL.
    #[error("frame body is not terminated by a NUL byte after content-length bytes")]
    MissingNul,
    /// The body is larger than the configured limit.
    #[error("frame body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// More headers than the configured limit.
    #[error("frame has more than {limit} headers")]
    TooManyHeaders { limit: usize },
    /// A command or header line longer than the configured limit.
    #[error("header line exceeds the limit of {limit} bytes")]
    HeaderTooLong { limit: usize },
}

/// Parses the frame at the front of `buf`; see the module documentation.
pub fn parse(
    buf: &mut BytesMut,
    version: Version,
    limits: &Limits,
) -> Result<Option<Parsed>, ParseError> {
    // End-of-lines before a frame are heart-beats.
    let eols = leading_eols(buf);
    if eols > 0 {
        buf.advance(eols);
        return Ok(Some(Parsed::Heartbeat));
    }
    if buf.is_empty() || buf[..] == b"\r"[..] {
        return Ok(None);
    }

    let mut pos = 0;
    let mut command = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    let body_start = loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            if buf.len() - pos > limits.max_header_line {
                return Err(ParseError::HeaderTooLong {
                    limit: limits.max_header_line,
                });
            }
            return Ok(None);
        };
        let mut line = &buf[pos..pos + nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.len() > limits.max_header_line {
            return Err(ParseError::HeaderTooLong {
                limit: limits.max_header_line,
            });
        }
        let next = pos + nl + 1;
        match command {
            None => {
                let cmd = Command::from_bytes(line).ok_or_else(|| {
                    ParseError::UnknownCommand(String::from_utf8_lossy(line).into_owned())
                })?;
                command = Some(cmd);
            }
            Some(_) if line.is_empty() => break next,
            Some(cmd) => {
                if headers.len() == limits.max_headers {
                    return Err(ParseError::TooManyHeaders {
                        limit: limits.max_headers,
                    });
                }
                let colon = memchr::memchr(b':', line).ok_or_else(|| {
                    ParseError::MalformedHeader(String::from_utf8_lossy(line).into_owned())
                })?;
                let escape = cmd.escapes_headers() && version != Version::V1_0;
                let name = decode(&line[..colon], escape, version)?;
                let value = decode(&line[colon + 1..], escape, version)?;
                headers.push((name, value));
            }
        }
        pos = next;
    };

    let content_length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| ParseError::BadContentLength(v.clone()))
        })
        .transpose()?;

    let body_end = match content_length {
        Some(len) => {
            if len > limits.max_body_bytes {
                return Err(ParseError::BodyTooLarge {
                    limit: limits.max_body_bytes,
                });
            }
            if buf.len() < body_start + len + 1 {
                return Ok(None);
            }
            if buf[body_start + len] != 0 {
                return Err(ParseError::MissingNul);
            }
            body_start + len
        }
        None => match memchr::memchr(0, &buf[body_start..]) {
            Some(n) if n > limits.max_body_bytes => {
                return Err(ParseError::BodyTooLarge {
                    limit: limits.max_body_bytes,
                });
            }
            Some(n) => body_start + n,
            None => {
                if buf.len() - body_start > limits.max_body_bytes {
                    return Err(ParseError::BodyTooLarge {
                        limit: limits.max_body_bytes,
                    });
                }
                return Ok(None);
            }
        },
    };

    let raw = buf.split_to(body_end + 1).freeze();
    Ok(Some(Parsed::Frame(Frame {
        command: command.expect("command parsed before the blank line"),
        headers,
        body: raw.slice(body_start..body_end),
    })))
}

fn leading_eols(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

fn decode(raw: &[u8], escape: bool, version: Version) -> Result<String, ParseError> {
    let text = std::str::from_utf8(raw).map_err(|_| ParseError::InvalidUtf8)?;
    if !escape || !raw.contains(&b'\\') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some('r') if version == Version::V1_2 => out.push('\r'),
            Some(other) => return Err(ParseError::BadEscape(other)),
            None => return Err(ParseError::BadEscape(' ')),
        }
    }
    Ok(out)
}
