//! Frame encoding with the header escaping of each version.

use super::frame::{Frame, Version};

/// True when `value` holds a byte that `version` escapes in headers.
pub fn needs_escaping(value: &str, version: Version) -> bool {
    match version {
        Version::V1_0 => false,
        Version::V1_1 => value.bytes().any(|b| matches!(b, b'\n' | b':' | b'\\')),
        Version::V1_2 => value
            .bytes()
            .any(|b| matches!(b, b'\n' | b':' | b'\\' | b'\r')),
    }
}

/// Appends `value` escaped per `version`: 1.2 escapes `\r \n : \`, 1.1 all but `\r`, 1.0 nothing.
pub fn escape_into(value: &str, version: Version, out: &mut Vec<u8>) {
    if !needs_escaping(value, version) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for b in value.bytes() {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\r' if version == Version::V1_2 => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Appends the wire form of `frame`. A `content-length` header is added when the body is not
/// empty and the frame does not carry one, so bodies may hold NUL bytes.
pub fn encode_frame(frame: &Frame, version: Version, out: &mut Vec<u8>) {
    let escape = frame.command.escapes_headers();
    out.extend_from_slice(frame.command.as_str().as_bytes());
    out.push(b'\n');
    let mut has_length = false;
    for (name, value) in &frame.headers {
        if name == "content-length" {
            has_length = true;
        }
        if escape {
            escape_into(name, version, out);
            out.push(b':');
            escape_into(value, version, out);
        } else {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    if !has_length && !frame.body.is_empty() {
        out.extend_from_slice(b"content-length:");
        out.extend_from_slice(frame.body.len().to_string().as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&frame.body);
    out.push(0);
}
