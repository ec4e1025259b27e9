//! The WebSocket opening handshake (RFC 6455 §4.2) of `/ws`, on HTTP/1.1.
//!
//! Done here rather than by axum's `WebSocketUpgrade` so that the session owns the
//! tungstenite stream and, through it, the socket: data frames are written straight from
//! the batch the session's writer built (see `Transport::send_chunks`), instead of being
//! copied into tungstenite's write buffer, which keeps the size of the largest message for
//! the life of the connection (after a burst, ~64 KiB per subscriber that nothing frees).

use crate::server::Watched;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// A server-side WebSocket over the upgraded connection's TCP stream.
pub type Socket = WebSocketStream<TcpStream>;

/// A request that is a valid WebSocket opening handshake, not yet answered.
pub struct Handshake {
    accept: HeaderValue,
    protocol: Option<&'static str>,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket handshake: the answer says what was wrong.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub why: &'static str,
}

fn refused(status: StatusCode, why: &'static str) -> Refused {
    Refused { status, why }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.why)).into_response()
    }
}

/// The comma-separated tokens of every occurrence of a header.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether a comma-separated header lists `token`, ignoring case.
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

impl Handshake {
    /// Checks the handshake headers and chooses the subprotocol: the first of `protocols`
    /// (the server's preference order) that the client offered, or none.
    pub fn check(req: &mut Request, protocols: &[&'static str]) -> Result<Handshake, Refused> {
        if req.method() != Method::GET {
            return Err(refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket handshake is a GET request",
            ));
        }
        let headers = req.headers();
        if !lists(headers, header::CONNECTION, "upgrade")
            || !lists(headers, header::UPGRADE, "websocket")
        {
            return Err(refused(
                StatusCode::UPGRADE_REQUIRED,
                "/ws speaks STOMP over WebSocket: send 'Connection: Upgrade' and 'Upgrade: websocket'",
            ));
        }
        if !lists(headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "unsupported WebSocket version: send 'Sec-WebSocket-Version: 13'",
            ));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "the Sec-WebSocket-Key header is missing",
            ));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header value");
        let protocol = protocols
            .iter()
            .copied()
            .find(|p| tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).any(|t| t == *p));
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return Err(refused(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded to a WebSocket",
            ));
        };
        Ok(Handshake {
            accept,
            protocol,
            on_upgrade,
        })
    }

    /// Answers 101 Switching Protocols and, once the connection is upgraded, runs
    /// `callback` with the WebSocket on a task of its own.
    pub fn accept<C, F>(self, config: WebSocketConfig, callback: C) -> Response
    where
        C: FnOnce(Socket) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                // The TCP stream itself, taken back from hyper with any bytes it read past the
                // handshake: the session reads and writes it without the layers an HTTP
                // connection needs (hyper's boxed IO, the idle-timeout watch and its clock
                // read per write).
                Ok(upgraded) => match upgraded.downcast::<TokioIo<Watched>>() {
                    Ok(parts) => {
                        let stream = parts.io.into_inner().into_inner();
                        let read = parts.read_buf.to_vec();
                        let socket = WebSocketStream::from_partially_read(
                            stream,
                            read,
                            Role::Server,
                            Some(config),
                        )
                        .await;
                        callback(socket).await;
                    }
                    Err(_) => tracing::error!("upgraded connection of an unexpected type; closed"),
                },
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept)
            .body(Body::empty())
            .expect("a valid 101 response");
        if let Some(p) = self.protocol {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method("GET").uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn refusals_say_what_is_missing() {
        let status = |r: Result<Handshake, Refused>| r.err().map(|r| r.status);
        let mut plain = request(&[]);
        assert_eq!(
            status(Handshake::check(&mut plain, &[])),
            Some(StatusCode::UPGRADE_REQUIRED)
        );
        let mut old = request(&[GOOD[0], GOOD[1], ("sec-websocket-version", "8"), GOOD[3]]);
        assert_eq!(
            status(Handshake::check(&mut old, &[])),
            Some(StatusCode::BAD_REQUEST)
        );
        let mut keyless = request(&GOOD[..3]);
        assert_eq!(
            status(Handshake::check(&mut keyless, &[])),
            Some(StatusCode::BAD_REQUEST)
        );
        // Valid headers, but a request that did not come through hyper cannot be upgraded.
        let mut unhooked = request(&GOOD);
        assert_eq!(
            status(Handshake::check(&mut unhooked, &[])),
            Some(StatusCode::UPGRADE_REQUIRED)
        );
    }

    #[test]
    fn accept_key_and_protocol_choice() {
        // RFC 6455 §1.3's example key and answer.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        // The server's preference among what the client offered; subprotocols match exactly.
        let mut offer = request(&[GOOD[0], GOOD[1], GOOD[2], GOOD[3]]);
        offer.headers_mut().append(
            "sec-websocket-protocol",
            "v10.stomp, V12.STOMP".parse().unwrap(),
        );
        offer
            .headers_mut()
            .append("sec-websocket-protocol", "v11.stomp".parse().unwrap());
        // A stand-in upgrade state (one that never completes) where hyper would put its own.
        let none = hyper::upgrade::on(request(&[]));
        offer.extensions_mut().insert(none);
        let h = Handshake::check(&mut offer, &["v12.stomp", "v11.stomp", "v10.stomp"]);
        assert_eq!(h.ok().and_then(|h| h.protocol), Some("v11.stomp"));
    }
}
