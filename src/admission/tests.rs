use super::*;
use axum::http::HeaderValue;

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn allowed(origin: &str, host: Option<&str>, allow: &[String]) -> bool {
    origin_allowed(Some(origin.as_bytes()), host, allow)
}

#[test]
fn origins_match_scheme_host_and_port_exactly() {
    let local = list(&["http://localhost:*", "https://app.example"]);
    assert!(origin_allowed(None, Some("x"), &local));
    assert!(allowed("http://localhost:3000", Some("gw:8080"), &local));
    assert!(allowed("http://localhost", Some("gw:8080"), &local));
    assert!(allowed("https://app.example", Some("gw"), &local));
    assert!(allowed("https://app.example:443", Some("gw"), &local));
    assert!(allowed("HTTPS://App.Example", Some("gw"), &local));
    assert!(allowed(
        "https://gw.example:8443",
        Some("gw.example:8443"),
        &local
    ));
    assert!(allowed("http://gw.example", Some("gw.example:80"), &local));
    assert!(allowed("http://[::1]:8080", Some("[::1]:8080"), &local));
    assert!(allowed("https://any.where", None, &list(&["*"])));
}

#[test]
fn hostile_origins_are_refused() {
    let local = list(&["http://localhost:*", "https://app.example"]);
    let refused = [
        "https://evil.example",
        "http://localhost.evil.example",
        "http://localhost:80x",
        "http://localhost:99999",
        "null",
        "null://localhost",
        "file://",
        "http://app.example",
        "https://app.example:8443",
        "https://app.example.evil",
        "https://evilapp.example",
        "https://app.example@evil.example",
        "https://app.example/path",
        "https://app%2eexample",
        "ftp://localhost:21",
        "",
    ];
    for o in refused {
        assert!(!allowed(o, Some("gw:8080"), &local), "{o}");
    }
    // Same host, other port: not the same origin. (The scheme a page was served with
    // is not known behind a TLS-terminating proxy; the Host header's port decides.)
    assert!(!allowed("http://gw:8081", Some("gw:8080"), &[]));
    assert!(!allowed("http://gw", Some("gw:8080"), &[]));
    assert!(!allowed("http://gw.evil", Some("gw"), &[]));
    // Not ASCII: undecodable values are refused, never treated as "no Origin".
    assert!(!origin_allowed(
        Some("http://lоcalhost:3000".as_bytes()),
        Some("gw"),
        &local
    ));
    assert!(!origin_allowed(Some(b"http://\xff"), Some("gw"), &local));
}

fn admission(trusted: &[&str], header: ForwardedHeader) -> Admission {
    Admission::new(
        AdmissionSettings {
            trusted_proxies: trusted.iter().map(|c| c.parse().unwrap()).collect(),
            forwarded_header: header,
            ..Default::default()
        },
        Arc::new(Metrics::new()),
    )
}

fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(name, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn forwarded_for_is_read_right_to_left_past_trusted_hops() {
    let a = admission(&["10.0.0.0/8", "127.0.0.1"], ForwardedHeader::XForwardedFor);
    let forged = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.7"]);
    // The proxy appended the real peer (203.0.113.7); the client wrote 6.6.6.6.
    assert_eq!(a.client_ip(ip("127.0.0.1"), &forged), ip("203.0.113.7"));
    // Two trusted hops, then the client.
    let chain = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.7, 10.1.2.3"]);
    assert_eq!(a.client_ip(ip("10.9.9.9"), &chain), ip("203.0.113.7"));
    // Several header lines are one list.
    let lines = headers("x-forwarded-for", &["6.6.6.6", "203.0.113.8"]);
    assert_eq!(a.client_ip(ip("127.0.0.1"), &lines), ip("203.0.113.8"));
    // Not from a trusted proxy: headers ignored.
    assert_eq!(a.client_ip(ip("198.51.100.1"), &forged), ip("198.51.100.1"));
    // Garbage left of trusted hops: the last trusted address.
    let junk = headers("x-forwarded-for", &["junk, 10.1.1.1"]);
    assert_eq!(a.client_ip(ip("127.0.0.1"), &junk), ip("10.1.1.1"));
    // No header at all: the proxy itself.
    assert_eq!(
        a.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
        ip("127.0.0.1")
    );
    // With ports.
    let ports = headers("x-forwarded-for", &["203.0.113.9:5555"]);
    assert_eq!(a.client_ip(ip("127.0.0.1"), &ports), ip("203.0.113.9"));
    // Without trusted proxies every header is ignored.
    let none = admission(&[], ForwardedHeader::XForwardedFor);
    assert_eq!(none.client_ip(ip("127.0.0.1"), &forged), ip("127.0.0.1"));
}

#[test]
fn rfc7239_forwarded() {
    let a = admission(&["127.0.0.1"], ForwardedHeader::Forwarded);
    let h = headers(
        "forwarded",
        &["for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https"],
    );
    assert_eq!(a.client_ip(ip("127.0.0.1"), &h), ip("2001:db8:cafe::17"));
    // X-Forwarded-For is not read when Forwarded is configured.
    let xff = headers("x-forwarded-for", &["6.6.6.6"]);
    assert_eq!(a.client_ip(ip("127.0.0.1"), &xff), ip("127.0.0.1"));
    let hidden = headers("forwarded", &["for=_hidden;by=x"]);
    assert_eq!(a.client_ip(ip("127.0.0.1"), &hidden), ip("127.0.0.1"));
}

#[test]
fn cidrs_and_ipv6_prefixes() {
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
    assert!(c.contains(ip("::ffff:10.0.0.1")));
    let one: Cidr = "::1".parse().unwrap();
    assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!("example.com".parse::<Cidr>().is_err());
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("8.8.8.8")));
    let a = admission(&[], ForwardedHeader::XForwardedFor);
    assert_eq!(
        a.limit_key(ip("2001:db8:1:2:aaaa::1")),
        a.limit_key(ip("2001:db8:1:2:bbbb::2"))
    );
    assert_ne!(
        a.limit_key(ip("2001:db8:1:2::1")),
        a.limit_key(ip("2001:db8:1:3::1"))
    );
    assert_eq!(a.limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
}

#[test]
fn ip_slots_are_counted_and_freed() {
    let l = IpLimiter::new(2);
    let ip: IpAddr = "127.0.0.9".parse().unwrap();
    let a = l.acquire(ip).unwrap();
    let _b = l.acquire(ip).unwrap();
    assert!(l.acquire(ip).is_none());
    assert!(l.acquire("127.0.0.8".parse().unwrap()).is_some());
    drop(a);
    assert!(l.acquire(ip).is_some());
}

#[test]
fn admit_and_rate() {
    let a = Admission::new(
        AdmissionSettings {
            max_connections: 3,
            max_per_address: 2,
            connect_rate: 1.0,
            connect_burst: 2.0,
            ..Default::default()
        },
        Arc::new(Metrics::new()),
    );
    let x = ip("192.0.2.1");
    assert!(a.check_rate(x).is_ok() && a.check_rate(x).is_ok());
    let r = a.check_rate(x).unwrap_err();
    assert_eq!((r.status, r.reason), (429, "connect_rate"));
    assert!(r.message.contains("--connect-rate-per-ip"));
    assert!(a.check_rate(ip("192.0.2.2")).is_ok());
    let t1 = a.admit(x).unwrap();
    let _t2 = a.admit(x).unwrap();
    assert!(matches!(a.admit(x), Err(Disconnect::TooManyFromAddress)));
    let _t3 = a.admit(ip("192.0.2.3")).unwrap();
    assert!(matches!(
        a.admit(ip("192.0.2.4")),
        Err(Disconnect::ServerFull)
    ));
    drop(t1);
    assert!(a.admit(x).is_ok());
}
