//! W3C trace context: the one check of a `traceparent` value, used where it enters the
//! gateway (a SEND header, a Kafka record header), so a trace crosses the gateway in both
//! directions and a malformed value is dropped rather than forwarded.

/// The header's name, on STOMP frames and Kafka records alike.
pub const TRACEPARENT: &str = "traceparent";

/// `version-traceid-parentid-flags`: 2, 32, 16 and 2 lowercase hex digits; version `ff` and
/// all-zero ids are invalid (W3C Trace Context, section 3.2).
pub fn valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let shaped = parts.len() == 4
        && [2, 32, 16, 2].iter().zip(&parts).all(|(n, p)| {
            p.len() == *n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
    let zero = |p: &str| p.bytes().all(|b| b == b'0');
    shaped && parts[0] != "ff" && !zero(parts[1]) && !zero(parts[2])
}

#[cfg(test)]
mod tests {
    use super::valid_traceparent;

    #[test]
    fn accepts_only_well_formed_values() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "bogus",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
    }
}
