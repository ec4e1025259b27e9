//! Incremental frame parser.
//!
//! `parse` looks at the front of a read buffer. When a whole frame is there it removes
//! exactly that frame and returns it; when only part of one is there it returns `Ok(None)`
//! and consumes nothing, so the caller reads more and calls again. A partial frame is an
//! expected runtime condition, not an error.
//!
//! Finding where a frame ends ([`Framer`]) is separate from decoding it: nothing is
//! allocated until the whole frame is there, and a [`Framer`] kept between reads scans each
//! byte once, so a frame that arrives a byte at a time costs linear time, not quadratic.

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
    /// `content-length` is not a decimal number of bytes.
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

/// Where the frame at the front of a buffer ends, found without decoding anything.
///
/// A `Framer` remembers how far it has looked, so a frame that arrives a byte at a time is
/// scanned once in total, not once per arrival: feed it the same growing buffer (bytes only
/// appended at the end) until it answers, then [`Framer::reset`] it after removing those
/// bytes. It applies every limit, so a hostile client cannot make it hold more than one
/// frame's worth of bytes.
#[derive(Debug, Clone, Default)]
pub struct Framer {
    /// Next byte not yet looked at.
    pos: usize,
    /// Start of the line being read.
    line_start: usize,
    /// The command, once its line is complete.
    command: Option<Command>,
    headers: usize,
    /// The first `content-length` value, once seen.
    content_length: Option<usize>,
    /// Where the body starts, once the blank line after the headers is seen.
    body_start: Option<usize>,
}

/// What the front of a buffer holds, as far as a [`Framer`] can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Not enough bytes yet.
    Incomplete,
    /// This many end-of-line bytes: heart-beats.
    Heartbeat(usize),
    /// A whole frame: its body is `body_start..nul`, the NUL is at `nul`.
    Frame {
        command: Command,
        body_start: usize,
        nul: usize,
    },
}

impl Extent {
    /// Bytes the frame or heart-beats take at the front of the buffer (0 when incomplete).
    pub fn len(&self) -> usize {
        match *self {
            Extent::Incomplete => 0,
            Extent::Heartbeat(n) => n,
            Extent::Frame { nul, .. } => nul + 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Framer {
    /// Forgets the frame scanned so far (call after removing its bytes from the buffer).
    pub fn reset(&mut self) {
        *self = Framer::default();
    }

    /// Looks at the bytes of `buf` not seen before. `buf` must be the buffer of the last
    /// call with bytes appended, or a new buffer after [`Framer::reset`].
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Extent, ParseError> {
        if self.pos == 0 {
            // End-of-lines before a frame are heart-beats.
            let eols = leading_eols(buf);
            if eols > 0 {
                return Ok(Extent::Heartbeat(eols));
            }
            if buf.is_empty() || buf == b"\r" {
                return Ok(Extent::Incomplete);
            }
        }
        let body_start = loop {
            if let Some(start) = self.body_start {
                break start;
            }
            let Some(nl) = memchr::memchr(b'\n', &buf[self.pos..]) else {
                self.pos = buf.len();
                if buf.len() - self.line_start > limits.max_header_line {
                    return Err(ParseError::HeaderTooLong {
                        limit: limits.max_header_line,
                    });
                }
                return Ok(Extent::Incomplete);
            };
            let end = self.pos + nl;
            let line = strip_cr(&buf[self.line_start..end]);
            if line.len() > limits.max_header_line {
                return Err(ParseError::HeaderTooLong {
                    limit: limits.max_header_line,
                });
            }
            match self.command {
                None => {
                    self.command = Some(Command::from_bytes(line).ok_or_else(|| {
                        ParseError::UnknownCommand(String::from_utf8_lossy(line).into_owned())
                    })?);
                }
                Some(_) if line.is_empty() => self.body_start = Some(end + 1),
                Some(_) => {
                    if self.headers == limits.max_headers {
                        return Err(ParseError::TooManyHeaders {
                            limit: limits.max_headers,
                        });
                    }
                    let colon = memchr::memchr(b':', line).ok_or_else(|| {
                        ParseError::MalformedHeader(String::from_utf8_lossy(line).into_owned())
                    })?;
                    self.headers += 1;
                    // The first content-length wins, as for every repeated header. Its name
                    // has no escapable characters, so the raw bytes decide.
                    if self.content_length.is_none() && &line[..colon] == b"content-length" {
                        let value = &line[colon + 1..];
                        let len = content_length(value).ok_or_else(|| {
                            ParseError::BadContentLength(String::from_utf8_lossy(value).into())
                        })?;
                        if len > limits.max_body_bytes {
                            return Err(ParseError::BodyTooLarge {
                                limit: limits.max_body_bytes,
                            });
                        }
                        self.content_length = Some(len);
                    }
                }
            }
            self.pos = end + 1;
            self.line_start = self.pos;
        };
        let command = self.command.expect("command parsed before the blank line");
        let nul = match self.content_length {
            Some(len) => {
                if buf.len() < body_start + len + 1 {
                    return Ok(Extent::Incomplete);
                }
                if buf[body_start + len] != 0 {
                    return Err(ParseError::MissingNul);
                }
                body_start + len
            }
            None => {
                let from = self.pos.max(body_start);
                match memchr::memchr(0, &buf[from..]) {
                    Some(n) if from + n - body_start > limits.max_body_bytes => {
                        return Err(ParseError::BodyTooLarge {
                            limit: limits.max_body_bytes,
                        });
                    }
                    Some(n) => from + n,
                    None => {
                        self.pos = buf.len();
                        if buf.len() - body_start > limits.max_body_bytes {
                            return Err(ParseError::BodyTooLarge {
                                limit: limits.max_body_bytes,
                            });
                        }
                        return Ok(Extent::Incomplete);
                    }
                }
            }
        };
        Ok(Extent::Frame {
            command,
            body_start,
            nul,
        })
    }
}

/// A `content-length` value: decimal digits only, with spaces around them tolerated; `+2`,
/// `-1`, `0x10`, overflowing values and other whitespace (a tab, a carriage return) are not
/// lengths. Only spaces: the framer reads the raw bytes, and a carriage return inside a 1.2
/// value would be re-sent escaped (`\r`), turning a frame this parser accepted into one it
/// refuses.
fn content_length(raw: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(raw).ok()?.trim_matches(' ');
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses the frame at the front of `buf`; see the module documentation. Nothing is
/// decoded until the whole frame is there; callers that feed a frame in many small reads
/// should keep a [`Framer`] (see `transport`) so that each byte is scanned once.
pub fn parse(
    buf: &mut BytesMut,
    version: Version,
    limits: &Limits,
) -> Result<Option<Parsed>, ParseError> {
    let extent = Framer::default().scan(buf, limits)?;
    decode_frame(buf, extent, version)
}

/// Removes the frame or heart-beats `extent` found at the front of `buf` and decodes it.
fn decode_frame(
    buf: &mut BytesMut,
    extent: Extent,
    version: Version,
) -> Result<Option<Parsed>, ParseError> {
    let (command, body_start, nul) = match extent {
        Extent::Incomplete => return Ok(None),
        Extent::Heartbeat(n) => {
            buf.advance(n);
            return Ok(Some(Parsed::Heartbeat));
        }
        Extent::Frame {
            command,
            body_start,
            nul,
        } => (command, body_start, nul),
    };
    let escape = command.escapes_headers() && version != Version::V1_0;
    let mut headers: Vec<(String, String)> = Vec::new();
    let head = &buf[..body_start];
    // The command line, then header lines up to the blank line (already validated).
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = strip_cr(line);
        if line.is_empty() {
            break;
        }
        let colon = memchr::memchr(b':', line).expect("framer checked the colon");
        let name = decode(&line[..colon], escape, version)?;
        let value = decode(&line[colon + 1..], escape, version)?;
        headers.push((name, value));
    }
    let raw = buf.split_to(nul + 1).freeze();
    Ok(Some(Parsed::Frame(Frame {
        command,
        headers,
        body: raw.slice(body_start..nul),
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
