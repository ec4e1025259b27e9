//! Codec tests: every parsing rule of the spec that the gateway relies on, and round trips
//! of arbitrary frames through encode → parse, whole and split at every byte.

use super::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::default()
}

fn parse_all(input: &[u8], version: Version) -> Result<Vec<Parsed>, ParseError> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(p) = parse(&mut buf, version, &limits())? {
        out.push(p);
    }
    assert!(buf.is_empty() || !out.is_empty() || !input.is_empty());
    Ok(out)
}

fn frames(input: &[u8], version: Version) -> Vec<Frame> {
    parse_all(input, version)
        .unwrap()
        .into_iter()
        .filter_map(|p| match p {
            Parsed::Frame(f) => Some(f),
            Parsed::Heartbeat => None,
        })
        .collect()
}

fn one(input: &[u8], version: Version) -> Frame {
    let mut f = frames(input, version);
    assert_eq!(f.len(), 1, "{f:?}");
    f.remove(0)
}

#[test]
fn parses_a_simple_frame() {
    let f = one(b"SEND\ndestination:/a\n\nhello\0", Version::V1_2);
    assert_eq!(f.command, Command::Send);
    assert_eq!(f.header("destination"), Some("/a"));
    assert_eq!(&f.body[..], b"hello");
}

#[test]
fn crlf_line_endings() {
    let f = one(b"SEND\r\ndestination:/a\r\n\r\nx\0", Version::V1_2);
    assert_eq!(f.header("destination"), Some("/a"));
    assert_eq!(&f.body[..], b"x");
}

#[test]
fn partial_frame_consumes_nothing() {
    let whole = b"SEND\ndestination:/a\ncontent-length:3\n\nabc\0";
    for cut in 0..whole.len() {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert_eq!(
            parse(&mut buf, Version::V1_2, &limits()).unwrap(),
            None,
            "cut at {cut}"
        );
        assert_eq!(buf.len(), cut, "consumed at cut {cut}");
    }
}

#[test]
fn one_frame_split_across_reads() {
    let whole = b"SEND\ndestination:/a\n\nabc\0";
    for cut in 1..whole.len() {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert_eq!(parse(&mut buf, Version::V1_2, &limits()).unwrap(), None);
        buf.extend_from_slice(&whole[cut..]);
        let Some(Parsed::Frame(f)) = parse(&mut buf, Version::V1_2, &limits()).unwrap() else {
            panic!("no frame after cut {cut}");
        };
        assert_eq!(&f.body[..], b"abc");
        assert!(buf.is_empty());
    }
}

#[test]
fn several_frames_in_one_read_with_eols_between() {
    let input = b"\nSEND\ndestination:/a\n\n1\0\n\r\nSEND\ndestination:/b\n\n2\0\n";
    let parsed = parse_all(input, Version::V1_2).unwrap();
    let kinds: Vec<&str> = parsed
        .iter()
        .map(|p| match p {
            Parsed::Frame(_) => "frame",
            Parsed::Heartbeat => "beat",
        })
        .collect();
    assert_eq!(kinds, ["beat", "frame", "beat", "frame", "beat"]);
    let f = frames(input, Version::V1_2);
    assert_eq!(&f[0].body[..], b"1");
    assert_eq!(&f[1].body[..], b"2");
}

#[test]
fn content_length_body_may_hold_nul() {
    let f = one(b"SEND\ncontent-length:5\n\na\0b\0c\0", Version::V1_2);
    assert_eq!(&f.body[..], b"a\0b\0c");
}

#[test]
fn content_length_must_end_in_nul() {
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:2\n\nabc\0"[..]);
    assert_eq!(
        parse(&mut buf, Version::V1_2, &limits()),
        Err(ParseError::MissingNul)
    );
}

#[test]
fn bad_content_length_is_an_error() {
    for value in [
        "-1",
        "+2",
        "0x10",
        "1e3",
        "",
        " ",
        "2 2",
        "99999999999999999999999",
        "\t2",
        "\r\r2",
    ] {
        let mut buf = BytesMut::from(format!("SEND\ncontent-length:{value}\n\nab\0").as_bytes());
        assert!(
            matches!(
                parse(&mut buf, Version::V1_2, &limits()),
                Err(ParseError::BadContentLength(_))
            ),
            "{value:?}"
        );
    }
    // Spaces around the digits are tolerated, as before.
    assert_eq!(
        &one(b"SEND\ncontent-length: 2 \n\nab\0", Version::V1_2).body[..],
        b"ab"
    );
}

#[test]
fn accepted_frames_survive_re_encoding() {
    // Found by the fuzzer: carriage returns before a content-length value were trimmed as
    // whitespace, and the frame, encoded again in 1.2 (`\r` escaped), was refused.
    let input = b"SEND\n\\r\\\\destination:/app/m000000cccccc\ncontent-length:\r\r\r\r\r\r\r\r\r5\n\na\x00b\x00c\x00\n";
    let line_cr = b"SEND\ncontent-length:3\r\r\n\nabc\0";
    let plain = b"SEND\n\\r\\\\destination:/a\ncontent-length: 5 \n\na\x00b\x00c\x00\n";
    for version in Version::ALL {
        for bytes in [&input[..], &line_cr[..]] {
            assert!(
                matches!(
                    parse_all(bytes, version),
                    Err(ParseError::BadContentLength(_) | ParseError::BadEscape(_))
                ),
                "{version:?} {bytes:?}"
            );
        }
        let Ok(parsed) = parse_all(plain, version) else {
            // 1.1 defines no `\r`: the name is refused, and so is the frame.
            assert_eq!(version, Version::V1_1);
            continue;
        };
        for p in parsed {
            let Parsed::Frame(frame) = p else { continue };
            let mut wire = Vec::new();
            encode_frame(&frame, version, &mut wire);
            assert_eq!(one(&wire, version), frame, "{version:?}");
        }
    }
}

#[test]
fn framer_scans_each_byte_once() {
    // A frame with a large header block whose body arrives a byte at a time: the framer
    // resumes where it stopped instead of starting over.
    let mut wire = b"SEND\n".to_vec();
    for i in 0..32 {
        wire.extend_from_slice(format!("h{i}:{}\n", "x".repeat(4000)).as_bytes());
    }
    wire.extend_from_slice(b"\n");
    let head = wire.len();
    let mut framer = Framer::default();
    let mut buf = wire.clone();
    assert_eq!(framer.scan(&buf, &limits()), Ok(Extent::Incomplete));
    for b in b"hello" {
        buf.push(*b);
        assert_eq!(framer.scan(&buf, &limits()), Ok(Extent::Incomplete));
    }
    buf.push(0);
    let extent = framer.scan(&buf, &limits()).unwrap();
    assert_eq!(
        extent,
        Extent::Frame {
            command: Command::Send,
            body_start: head,
            nul: head + 5
        }
    );
    assert_eq!(extent.len(), buf.len());
    // The same bytes fed one at a time give the same answer.
    let mut framer = Framer::default();
    let mut grown = Vec::new();
    let mut last = Extent::Incomplete;
    for b in &buf {
        grown.push(*b);
        last = framer.scan(&grown, &limits()).unwrap();
    }
    assert_eq!(last, extent);
    // Heart-beats, and a reset between frames.
    let mut framer = Framer::default();
    assert_eq!(
        framer.scan(b"\r\n\nSEND", &limits()),
        Ok(Extent::Heartbeat(3))
    );
    framer.reset();
    assert_eq!(framer.scan(b"\r", &limits()), Ok(Extent::Incomplete));
    assert_eq!(
        framer.scan(b"SEND\ncontent-length:+2\n", &limits()),
        Err(ParseError::BadContentLength("+2".into()))
    );
}

#[test]
fn repeated_headers_first_wins() {
    let f = one(b"SEND\nfoo:1\nfoo:2\n\n\0", Version::V1_2);
    assert_eq!(f.header("foo"), Some("1"));
    assert_eq!(f.headers.len(), 2);
}

#[test]
fn header_values_may_contain_colons_in_1_0() {
    let f = one(b"SEND\nurl:http://x\n\n\0", Version::V1_0);
    assert_eq!(f.header("url"), Some("http://x"));
}

#[test]
fn escapes_in_1_2() {
    let f = one(b"SEND\na\\cb:x\\ny\\rz\\\\w\\c\n\n\0", Version::V1_2);
    assert_eq!(f.header("a:b"), Some("x\ny\rz\\w:"));
}

#[test]
fn escapes_in_1_1_have_no_carriage_return() {
    let f = one(b"SEND\na:x\\ny\\c\\\\\n\n\0", Version::V1_1);
    assert_eq!(f.header("a"), Some("x\ny:\\"));
    let mut buf = BytesMut::from(&b"SEND\na:x\\ry\n\n\0"[..]);
    assert_eq!(
        parse(&mut buf, Version::V1_1, &limits()),
        Err(ParseError::BadEscape('r'))
    );
}

#[test]
fn no_escapes_in_1_0() {
    let f = one(b"SEND\na:x\\ny\n\n\0", Version::V1_0);
    assert_eq!(f.header("a"), Some("x\\ny"));
}

#[test]
fn undefined_escape_is_fatal() {
    let mut buf = BytesMut::from(&b"SEND\na:\\t\n\n\0"[..]);
    assert_eq!(
        parse(&mut buf, Version::V1_2, &limits()),
        Err(ParseError::BadEscape('t'))
    );
}

#[test]
fn connect_headers_are_not_unescaped() {
    let f = one(b"CONNECT\nlogin:a\\cb\n\n\0", Version::V1_2);
    assert_eq!(f.header("login"), Some("a\\cb"));
}

#[test]
fn unknown_command_is_an_error() {
    let mut buf = BytesMut::from(&b"HELLO\n\n\0"[..]);
    assert_eq!(
        parse(&mut buf, Version::V1_2, &limits()),
        Err(ParseError::UnknownCommand("HELLO".into()))
    );
    // Known as soon as the command line is complete, before the frame is.
    let mut buf = BytesMut::from(&b"send\n"[..]);
    assert!(parse(&mut buf, Version::V1_2, &limits()).is_err());
}

#[test]
fn header_without_colon_is_an_error() {
    let mut buf = BytesMut::from(&b"SEND\nnocolon\n\n\0"[..]);
    assert!(matches!(
        parse(&mut buf, Version::V1_2, &limits()),
        Err(ParseError::MalformedHeader(_))
    ));
}

#[test]
fn limits_are_enforced() {
    let small = Limits {
        max_body_bytes: 4,
        max_headers: 2,
        max_header_line: 16,
    };
    let cases: [(&[u8], ParseError); 5] = [
        (b"SEND\n\n12345\0", ParseError::BodyTooLarge { limit: 4 }),
        (b"SEND\n\n12345", ParseError::BodyTooLarge { limit: 4 }),
        (
            b"SEND\ncontent-length:5\n\n",
            ParseError::BodyTooLarge { limit: 4 },
        ),
        (
            b"SEND\na:1\nb:2\nc:3\n\n\0",
            ParseError::TooManyHeaders { limit: 2 },
        ),
        (
            b"SEND\nheader-that-is-long:1\n\n\0",
            ParseError::HeaderTooLong { limit: 16 },
        ),
    ];
    for (input, expected) in cases {
        let mut buf = BytesMut::from(input);
        assert_eq!(
            parse(&mut buf, Version::V1_2, &small),
            Err(expected),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // A line without its newline is refused once it passes the limit, not buffered forever.
    let mut buf = BytesMut::from(&[b'A'; 17][..]);
    assert_eq!(
        parse(&mut buf, Version::V1_2, &small),
        Err(ParseError::HeaderTooLong { limit: 16 })
    );
}

#[test]
fn invalid_utf8_header_is_an_error() {
    let mut buf = BytesMut::from(&b"SEND\na:\xff\n\n\0"[..]);
    assert_eq!(
        parse(&mut buf, Version::V1_2, &limits()),
        Err(ParseError::InvalidUtf8)
    );
}

#[test]
fn encoder_escapes_per_version() {
    let frame = Frame::new(Command::Message).with("k:1", "a\nb\r\\");
    let mut out = Vec::new();
    encode_frame(&frame, Version::V1_2, &mut out);
    assert_eq!(out, b"MESSAGE\nk\\c1:a\\nb\\r\\\\\n\n\0");
    out.clear();
    encode_frame(&frame, Version::V1_1, &mut out);
    assert_eq!(out, b"MESSAGE\nk\\c1:a\\nb\r\\\\\n\n\0");
    out.clear();
    encode_frame(&frame, Version::V1_0, &mut out);
    assert_eq!(out, b"MESSAGE\nk:1:a\nb\r\\\n\n\0");
}

#[test]
fn encoder_adds_content_length_and_keeps_nul_bodies() {
    let frame = Frame::new(Command::Message).with_body(Bytes::from_static(b"a\0b"));
    let mut out = Vec::new();
    encode_frame(&frame, Version::V1_2, &mut out);
    assert_eq!(out, b"MESSAGE\ncontent-length:3\n\na\0b\0");
    assert_eq!(
        one(&out, Version::V1_2),
        frame.clone().with("content-length", "3")
    );
}

#[test]
fn connected_is_not_escaped() {
    let frame = Frame::new(Command::Connected).with("server", "a:b");
    let mut out = Vec::new();
    encode_frame(&frame, Version::V1_2, &mut out);
    assert_eq!(out, b"CONNECTED\nserver:a:b\n\n\0");
}

fn header_text() -> impl Strategy<Value = String> {
    // Any characters, including the ones that need escaping.
    proptest::string::string_regex("[a-z0-9:\\\\\n\r é-]{0,12}").unwrap()
}

fn escapable_command() -> impl Strategy<Value = Command> {
    prop::sample::select(vec![
        Command::Send,
        Command::Subscribe,
        Command::Message,
        Command::Error,
        Command::Receipt,
        Command::Ack,
    ])
}

proptest! {
    #[test]
    fn round_trip_1_2(
        command in escapable_command(),
        headers in prop::collection::vec((header_text(), header_text()), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut frame = Frame::new(command).with_body(Bytes::from(body.clone()));
        // Names are non-empty and never "content-length" (the encoder owns that header).
        frame.headers = headers
            .into_iter()
            .map(|(k, v)| (format!("h{k}"), v))
            .collect();
        let mut wire = Vec::new();
        encode_frame(&frame, Version::V1_2, &mut wire);
        let parsed = one(&wire, Version::V1_2);
        prop_assert_eq!(parsed.command, frame.command);
        prop_assert_eq!(&parsed.body[..], &body[..]);
        let expected: Vec<(String, String)> = frame.headers.clone();
        let got: Vec<(String, String)> = parsed
            .headers
            .into_iter()
            .filter(|(k, _)| k != "content-length")
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn round_trip_1_1_without_carriage_returns(
        headers in prop::collection::vec(("[a-z:\\\\\n]{1,8}", "[a-z:\\\\\n ]{0,8}"), 0..6),
        body in "[^\u{0}]{0,50}",
    ) {
        let mut frame = Frame::new(Command::Send).with_body(Bytes::from(body.clone()));
        frame.headers = headers.into_iter().map(|(k, v)| (format!("h{k}"), v)).collect();
        let mut wire = Vec::new();
        encode_frame(&frame, Version::V1_1, &mut wire);
        let parsed = one(&wire, Version::V1_1);
        prop_assert_eq!(&parsed.body[..], body.as_bytes());
        prop_assert_eq!(parsed.headers.len(), frame.headers.len() + usize::from(!body.is_empty()));
    }

    #[test]
    fn split_anywhere_gives_the_same_frames(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let f = Frame::new(Command::Send)
                .with("destination", format!("/d/{i}"))
                .with_body(Bytes::from(body.clone()));
            encode_frame(&f, Version::V1_2, &mut wire);
            wire.push(b'\n');
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([wire.len()]) {
            buf.extend_from_slice(&wire[last..p]);
            last = p;
            while let Some(parsed) = parse(&mut buf, Version::V1_2, &limits()).unwrap() {
                if let Parsed::Frame(f) = parsed {
                    got.push(f.body.to_vec());
                }
            }
        }
        prop_assert_eq!(got, bodies);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_kept_framer_agrees_with_a_fresh_one(
        input in prop::collection::vec(prop::sample::select(vec![b'S', b'E', b'N', b'D', b'\n', b'\r', b':', b'a', 0u8, b'1']), 0..200),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut input = input;
        input.splice(0..0, b"SEND\ncontent-length:3\n".iter().copied().filter(|_| cuts.len() % 2 == 0));
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.sort_unstable();
        let small = Limits { max_body_bytes: 64, max_headers: 4, max_header_line: 32 };
        let mut kept = Framer::default();
        let mut buf = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([input.len()]) {
            buf.extend_from_slice(&input[last..p]);
            last = p;
            let fresh = Framer::default().scan(&buf, &small);
            let resumed = kept.scan(&buf, &small);
            prop_assert_eq!(&resumed, &fresh);
            match resumed {
                Ok(Extent::Incomplete) => {}
                Ok(extent) => {
                    buf.drain(..extent.len());
                    kept.reset();
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = BytesMut::from(&input[..]);
        for _ in 0..input.len() + 1 {
            let before = buf.len();
            match parse(&mut buf, Version::V1_2, &limits()) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) | Err(_) => break,
            }
        }
    }
}
