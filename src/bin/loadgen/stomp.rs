//! The STOMP frames the load generator sends, and the token `@@<dest>:<seq>:<nanos>@@`
//! every published body carries, found in received payloads by a byte search (so the
//! same tool works whether the server wraps the body or delivers it as sent).

use memchr::memmem;

use crate::args::Args;

pub fn dest_name(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

pub fn connect_frame(a: &Args) -> Vec<u8> {
    format!(
        "CONNECT\naccept-version:1.2,1.1,1.0\nhost:{}\nlogin:{}\npasscode:{}\nheart-beat:{},0\n\n\0",
        a.vhost, a.login, a.passcode, a.heartbeat_ms
    )
    .into_bytes()
}

pub fn subscribe_frame(dest: &str, receipt: bool) -> Vec<u8> {
    let mut s = format!("SUBSCRIBE\nid:0\ndestination:{dest}\nack:auto\n");
    if receipt {
        s.push_str("receipt:s0\n");
    }
    s.push_str("\n\0");
    s.into_bytes()
}

static TOKEN: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"@@"));

#[inline]
fn parse_num(b: &[u8], i: &mut usize) -> Option<u64> {
    let s = *i;
    let mut v: u64 = 0;
    while *i < b.len() && b[*i].is_ascii_digit() {
        v = v.wrapping_mul(10).wrapping_add((b[*i] - b'0') as u64);
        *i += 1;
    }
    (*i > s).then_some(v)
}

/// Calls `f(dest, seq, nanos)` for every token in `p`.
#[inline]
pub fn scan_tokens(p: &[u8], mut f: impl FnMut(u64, u64, u64)) {
    let mut from = 0;
    while let Some(k) = TOKEN.find(&p[from..]) {
        let mut i = from + k + 2;
        let parsed = (|| {
            let d = parse_num(p, &mut i)?;
            (p.get(i) == Some(&b':')).then_some(())?;
            i += 1;
            let s = parse_num(p, &mut i)?;
            (p.get(i) == Some(&b':')).then_some(())?;
            i += 1;
            let t = parse_num(p, &mut i)?;
            (p.get(i..i + 2) == Some(b"@@")).then_some(())?;
            Some((d, s, t))
        })();
        match parsed {
            Some((d, s, t)) => {
                f(d, s, t);
                from = i + 2;
            }
            None => from += k + 2,
        }
        if from >= p.len() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_in_wrapped_bodies() {
        let p = b"MESSAGE\ndestination:/topic/market/M3\n\n{\"id\":\"x\",\"text\":\"@@3:17:123456@@\",\"ts\":1}\0MESSAGE\n\n@@3:18:99@@\0@@bad@@";
        let mut got = Vec::new();
        scan_tokens(p, |d, s, t| got.push((d, s, t)));
        assert_eq!(got, vec![(3, 17, 123456), (3, 18, 99)]);
    }
}
