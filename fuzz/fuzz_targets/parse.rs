//! Fuzzes the incremental STOMP parser: arbitrary bytes, fed whole and in two pieces, under
//! each protocol version. The parser must never panic, never consume a partial frame, and
//! every frame it returns must survive encode → parse unchanged.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use stompgate::stomp::{Frame, Limits, Parsed, Version, encode_frame, parse};

const LIMITS: Limits = Limits {
    max_body_bytes: 4096,
    max_headers: 16,
    max_header_line: 256,
};

/// Escaping may double a header line and the encoder adds content-length: room for both.
const ROOMY: Limits = Limits {
    max_body_bytes: 4096,
    max_headers: 17,
    max_header_line: 1024,
};

fn run(chunks: &[&[u8]], version: Version, limits: &Limits) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match parse(&mut buf, version, limits) {
                Ok(Some(Parsed::Frame(f))) => {
                    assert!(buf.len() < before);
                    frames.push(f);
                }
                Ok(Some(Parsed::Heartbeat)) => assert!(buf.len() < before),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "partial frame consumed");
                    break;
                }
                Err(_) => return frames,
            }
        }
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    for version in Version::ALL {
        let whole = run(&[data], version, &LIMITS);
        if data.len() > 1 {
            let cut = data[0] as usize % data.len();
            let split = run(&[&data[..cut], &data[cut..]], version, &LIMITS);
            // Splitting the input never changes the frames that come before any error.
            let n = whole.len().min(split.len());
            assert_eq!(&whole[..n], &split[..n]);
        }
        for frame in whole {
            if version == Version::V1_0 || !frame.command.escapes_headers() {
                continue;
            }
            let mut wire = Vec::new();
            encode_frame(&frame, version, &mut wire);
            let again = run(&[&wire], version, &ROOMY);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].command, frame.command);
            assert_eq!(again[0].body, frame.body);
        }
    }
});
