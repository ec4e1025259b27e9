//! Who may open a connection: the one gate both listeners (WebSocket in `http`, raw TCP in
//! `server`) pass through before a session exists.
//!
//! In order: the client address is resolved (the socket peer, or behind `--trusted-proxies`
//! the first untrusted hop of `X-Forwarded-For` / `Forwarded`, read right to left); the
//! browser `Origin` is checked against cross-site WebSocket hijacking; the address's rate
//! of new connections is checked (a token bucket, refused with HTTP 429 before the upgrade);
//! then a slot of the address (`--max-connections-per-ip`) and a permit of the gateway
//! (`--max-connections`) are taken together as a [`Ticket`] that the session holds for its
//! life. Every refusal is counted in `stompgate_refused_total{reason}` and says why.
//!
//! IPv6 clients are limited per network prefix (`--ipv6-prefix`, /64 by default): one host
//! usually owns a whole /64 and could otherwise take a new address for every connection.

use crate::disconnect::Disconnect;
use crate::metrics::Metrics;
use crate::stomp::{Frame, Version, encode_frame};
use crate::transport::Transport;
use axum::http::HeaderMap;
use dashmap::DashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A network in CIDR form: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask_v4(u32::from(a), self.prefix) == mask_v4(u32::from(n), self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                mask_v6(u128::from(a), self.prefix) == mask_v6(u128::from(n), self.prefix)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network = canonical(IpAddr::from_str(addr).map_err(|_| {
            format!("'{text}' is not an address or network (for example 10.0.0.0/8 or ::1)")
        })?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

fn mask_v4(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - prefix))
    }
}

fn mask_v6(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & (u128::MAX << (128 - prefix))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Which proxy header carries the client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (what nginx's `$proxy_add_x_forwarded_for` writes).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// The limits admission enforces, from the configuration.
#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    /// Open connections of the whole gateway (WebSocket and TCP).
    pub max_connections: usize,
    /// Open connections per client address (0: unlimited).
    pub max_per_address: usize,
    /// New connections per second per client address (0: unlimited).
    pub connect_rate: f64,
    /// New connections an address may open in a burst above the rate.
    pub connect_burst: f64,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Which forwarding header they write.
    pub forwarded_header: ForwardedHeader,
    /// IPv6 addresses share limits per network of this prefix length.
    pub ipv6_prefix: u8,
    /// `--allowed-origins`.
    pub allowed_origins: Vec<String>,
    /// Open plain-HTTP connections (not yet upgraded) of the whole gateway.
    pub max_http_connections: usize,
    /// Open plain-HTTP connections per socket address (0: unlimited; trusted proxies exempt).
    pub max_http_per_address: usize,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            max_connections: 50_000,
            max_per_address: 1000,
            connect_rate: 0.0,
            connect_burst: 1.0,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
            allowed_origins: Vec::new(),
            max_http_connections: 4096,
            max_http_per_address: 64,
        }
    }
}

/// Why admission said no before a WebSocket upgrade: HTTP status, metrics label, text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

/// What an admitted connection holds until it ends: its address slot and its permit.
pub struct Ticket {
    _slot: IpSlot,
    _permit: OwnedSemaphorePermit,
}

/// What an accepted HTTP connection holds while it is plain HTTP (until it ends or is
/// upgraded to a WebSocket, which then needs a [`Ticket`]).
pub struct HttpTicket {
    _slot: Option<IpSlot>,
    _permit: OwnedSemaphorePermit,
}

pub struct Admission {
    settings: AdmissionSettings,
    metrics: Arc<Metrics>,
    per_address: Arc<IpLimiter>,
    connections: Arc<Semaphore>,
    rates: DashMap<IpAddr, Bucket>,
    last_prune: Mutex<Instant>,
    http_per_address: Arc<IpLimiter>,
    http_connections: Arc<Semaphore>,
}

/// A token bucket of new connections for one address.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Rate buckets kept before idle ones are dropped.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

impl Admission {
    pub fn new(settings: AdmissionSettings, metrics: Arc<Metrics>) -> Admission {
        Admission {
            per_address: IpLimiter::new(settings.max_per_address),
            http_per_address: IpLimiter::new(settings.max_http_per_address),
            http_connections: Arc::new(Semaphore::new(settings.max_http_connections)),
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            metrics,
            rates: DashMap::new(),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    pub fn settings(&self) -> &AdmissionSettings {
        &self.settings
    }

    /// True when `peer` is one of `--trusted-proxies`.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|c| c.contains(peer))
    }

    /// The client's address: the socket peer, unless the peer is a trusted proxy; then the
    /// forwarding header is read right to left, skipping trusted hops, and the first
    /// untrusted address is the client. Without trusted proxies the headers are ignored.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        let hops: Vec<Option<IpAddr>> = match self.settings.forwarded_header {
            ForwardedHeader::XForwardedFor => headers
                .get_all("x-forwarded-for")
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("?").split(','))
                .map(parse_hop)
                .collect(),
            ForwardedHeader::Forwarded => headers
                .get_all("forwarded")
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("for=?").split(','))
                .map(|element| {
                    element
                        .split(';')
                        .find_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            k.trim().eq_ignore_ascii_case("for").then_some(v)
                        })
                        .and_then(|v| parse_hop(v.trim().trim_matches('"')))
                })
                .collect(),
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            // An unreadable hop can only sit left of every address a trusted proxy wrote:
            // the last trusted address seen is then as far as the chain can be believed.
            let Some(ip) = hop else { break };
            client = canonical(ip);
            if !self.is_trusted_proxy(client) {
                break;
            }
        }
        client
    }

    /// The key per-address limits count under: IPv6 addresses by their `--ipv6-prefix`.
    pub fn limit_key(&self, ip: IpAddr) -> IpAddr {
        match canonical(ip) {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask_v6(
                u128::from(v6),
                self.settings.ipv6_prefix,
            ))),
            v4 => v4,
        }
    }

    /// The Origin check (see [`origin_allowed`]), counted and explained when it fails.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let origin = headers.get("origin").map(|v| v.as_bytes());
        let host = headers.get("host").and_then(|v| v.to_str().ok());
        if origin_allowed(origin, host, &self.settings.allowed_origins) {
            return Ok(());
        }
        let shown = origin
            .map(|o| String::from_utf8_lossy(o).escape_debug().to_string())
            .unwrap_or_default();
        self.metrics.errors.with_label_values(&["origin"]).inc();
        Err(self.refused(
            403,
            "origin",
            format!(
                "origin {shown} is not allowed to open a WebSocket here; add it to --allowed-origins\n"
            ),
        ))
    }

    /// Takes one new-connection token of the address, or refuses with HTTP 429.
    pub fn check_rate(&self, ip: IpAddr) -> Result<(), Refusal> {
        let rate = self.settings.connect_rate;
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = self.settings.connect_burst.max(1.0);
        let now = Instant::now();
        self.prune(now, rate, burst);
        let mut bucket = self.rates.entry(self.limit_key(ip)).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.last = now;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        drop(bucket);
        Err(self.refused(
            429,
            "connect_rate",
            format!(
                "too many new connections from your address: at most {rate} per second (burst {burst}); wait a second and reconnect, or ask the operator to raise --connect-rate-per-ip\n"
            ),
        ))
    }

    /// Drops the buckets of addresses that have been quiet long enough to be full again.
    fn prune(&self, now: Instant, rate: f64, burst: f64) {
        if self.rates.len() < MAX_TRACKED_ADDRESSES {
            return;
        }
        let Ok(mut last) = self.last_prune.try_lock() else {
            return;
        };
        if now.saturating_duration_since(*last) < Duration::from_secs(1) {
            return;
        }
        *last = now;
        let refill = Duration::from_secs_f64(burst / rate);
        self.rates
            .retain(|_, b| now.saturating_duration_since(b.last) < refill);
    }

    /// Takes a slot of the address and a permit of the gateway, or says which limit is full.
    pub fn admit(&self, ip: IpAddr) -> Result<Ticket, Disconnect> {
        let slot = self
            .per_address
            .acquire(self.limit_key(ip))
            .ok_or(Disconnect::TooManyFromAddress)?;
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Disconnect::ServerFull)?;
        Ok(Ticket {
            _slot: slot,
            _permit: permit,
        })
    }

    /// Admits a freshly accepted HTTP connection from socket address `peer`, or names the
    /// full limit (the connection is then closed at once; it is counted here).
    pub fn admit_http(&self, peer: IpAddr) -> Result<HttpTicket, &'static str> {
        let refuse = |reason: &'static str| {
            self.metrics.refused.with_label_values(&[reason]).inc();
            reason
        };
        let permit = self
            .http_connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| refuse("http_server_full"))?;
        let slot = if self.is_trusted_proxy(peer) {
            None
        } else {
            Some(
                self.http_per_address
                    .acquire(self.limit_key(peer))
                    .ok_or_else(|| refuse("http_too_many_from_address"))?,
            )
        };
        Ok(HttpTicket {
            _slot: slot,
            _permit: permit,
        })
    }

    /// Counts a refusal and builds its answer.
    pub fn refused(&self, status: u16, reason: &'static str, message: String) -> Refusal {
        self.metrics.refused.with_label_values(&[reason]).inc();
        Refusal {
            status,
            reason,
            message,
        }
    }

    /// Refuses a transport over a limit (`ServerFull`, `TooManyFromAddress`) with a clear
    /// ERROR, then closes it.
    pub async fn refuse(&self, mut transport: Transport, reason: Disconnect) {
        self.metrics
            .disconnects
            .with_label_values(&[reason.label()])
            .inc();
        self.metrics
            .errors
            .with_label_values(&[reason.label()])
            .inc();
        self.metrics
            .refused
            .with_label_values(&[reason.label()])
            .inc();
        let (message, detail) = reason.error_text().unwrap_or_default();
        let limit = match reason {
            Disconnect::TooManyFromAddress => self.settings.max_per_address,
            _ => self.settings.max_connections,
        };
        let detail = format!("{detail} (limit: {limit} connections)");
        let mut out = Vec::new();
        encode_frame(&Frame::error(message, &detail), Version::V1_2, &mut out);
        let _ = tokio::time::timeout(Duration::from_secs(1), transport.send(vec![out])).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), transport.close(reason)).await;
    }
}

/// One hop of a forwarding header: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Counts open connections per client address (or IPv6 network).
pub struct IpLimiter {
    max: usize,
    open: DashMap<IpAddr, usize>,
}

/// Holds one connection slot of an address; frees it when dropped.
pub struct IpSlot {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
}

impl IpLimiter {
    /// `max` connections per address; 0 means no limit.
    pub fn new(max: usize) -> Arc<IpLimiter> {
        Arc::new(IpLimiter {
            max,
            open: DashMap::new(),
        })
    }

    /// Takes a slot for `ip`, or `None` when the address already has `max` connections.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut count = self.open.entry(ip).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.limiter.open.remove_if_mut(&self.ip, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

/// The parts of an origin that must match exactly: scheme, host, port.
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    scheme: &'a str,
    host: String,
    /// `None` in an allow-list entry ending in `:*` (any port).
    port: Option<u16>,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// Host names of letters, digits, `-` and `.`, or a bracketed IPv6 literal: anything else
/// (user info, percent escapes, spaces) is not an origin a browser sends.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Splits `host[:port]` (the port may be `*` when `wildcard`).
fn host_port(text: &str, wildcard: bool) -> Option<(String, Option<Option<u16>>)> {
    let (host, port) = match text.rfind(':') {
        Some(i) if !text[i..].contains(']') => (&text[..i], Some(&text[i + 1..])),
        _ => (text, None),
    };
    if !valid_host(host) {
        return None;
    }
    let port = match port {
        None => None,
        Some("*") if wildcard => Some(None),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(Some(p.parse().ok()?))
        }
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

fn parse_origin(text: &str, wildcard: bool) -> Option<Origin<'_>> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => "http",
        "https" => "https",
        _ => return None,
    };
    let (host, port) = host_port(rest, wildcard)?;
    Some(Origin {
        scheme,
        port: port.unwrap_or(Some(default_port(scheme))),
        host,
    })
}

/// True when a WebSocket upgrade with this `Origin` may proceed. Requests without `Origin`
/// (non-browser clients) pass; a browser page passes when its origin is this gateway (host
/// and port of the `Host` header, the port defaulting by the origin's scheme) or is on the allow-list (`*` alone allows all; a `:*`
/// port suffix allows any port). Scheme, host and port are compared exactly; `null`, values
/// that are not ASCII, paths, user info and look-alike hosts are refused.
pub fn origin_allowed(origin: Option<&[u8]>, host: Option<&str>, allow: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    if !origin.is_ascii() {
        return false;
    }
    let origin = origin.trim();
    if allow.iter().any(|a| a.trim() == "*") {
        return true;
    }
    let Some(origin) = parse_origin(origin, false) else {
        return false;
    };
    if let Some((host, port)) = host.and_then(|h| host_port(h.trim(), false)) {
        let port = port.flatten().unwrap_or(default_port(origin.scheme));
        if host == origin.host && Some(port) == origin.port {
            return true;
        }
    }
    allow.iter().any(|a| {
        parse_origin(a.trim().trim_end_matches('/'), true).is_some_and(|a| {
            a.scheme == origin.scheme
                && a.host == origin.host
                && (a.port.is_none() || a.port == origin.port)
        })
    })
}

#[cfg(test)]
mod tests;
