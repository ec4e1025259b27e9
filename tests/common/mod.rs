//! Test support: a real gateway on 127.0.0.1:0 and a raw STOMP-over-WebSocket client built
//! on tokio-tungstenite that sends exact bytes and parses what comes back.
#![allow(dead_code)]

pub mod process;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use stompgate::config::Config;
use stompgate::server::Server;
use stompgate::stomp::{Command, Frame, Limits, Parsed, Version, parse};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async};

pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a gateway with `args` (as on the command line) on a free port.
pub async fn start(args: &[&str]) -> Server {
    let mut argv = vec![
        "stompgate",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--drain-delay-ms",
        "0",
    ];
    argv.extend_from_slice(args);
    let config = <Config as clap::Parser>::parse_from(argv);
    Server::start(config).await.expect("gateway starts")
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What arrived: a frame, a heart-beat, or the end of the connection.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    Heartbeat,
    Closed(Option<u16>),
}

pub struct Client {
    pub ws: Ws,
    buf: BytesMut,
    pub protocol: Option<String>,
}

impl Client {
    /// Opens `/ws` offering `protocols` (none when empty).
    pub async fn open(addr: SocketAddr, protocols: &[&str]) -> Client {
        Client::open_with(addr, protocols, None).await
    }

    /// Opens `/ws` with an optional small receive buffer (to stall quickly).
    pub async fn open_with(
        addr: SocketAddr,
        protocols: &[&str],
        recv_buffer: Option<u32>,
    ) -> Client {
        Client::try_open(addr, "/ws", protocols, &[], recv_buffer, None)
            .await
            .expect("websocket upgrade")
    }

    /// Opens `path` with extra request headers, from `local` (a 127.0.0.x address) if given;
    /// the upgrade's HTTP error if it is refused.
    pub async fn try_open(
        addr: SocketAddr,
        path: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
        recv_buffer: Option<u32>,
        local: Option<std::net::IpAddr>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        for (k, v) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                protocols.join(", ").parse().unwrap(),
            );
        }
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        if let Some(ip) = local {
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap();
        let (ws, response) = client_async(request, MaybeTlsStream::Plain(stream)).await?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_string());
        Ok(Client {
            ws,
            buf: BytesMut::new(),
            protocol,
        })
    }

    /// Opens and CONNECTs with STOMP 1.2 as `login`.
    pub async fn connect(addr: SocketAddr, login: &str) -> Client {
        let mut c = Client::open(addr, &["v12.stomp"]).await;
        c.send(&format!(
            "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{login}\n\n\0"
        ))
        .await;
        let f = c.expect(Command::Connected).await;
        assert_eq!(f.header("version"), Some("1.2"));
        c
    }

    pub async fn send(&mut self, raw: &str) {
        self.ws.send(Message::text(raw)).await.unwrap();
    }

    pub async fn send_bytes(&mut self, raw: &[u8]) {
        self.ws.send(Message::binary(raw.to_vec())).await.unwrap();
    }

    /// Next event, or panics after `WAIT`.
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.next_event())
            .await
            .expect("an event within the wait")
    }

    async fn next_event(&mut self) -> Event {
        loop {
            match parse(
                &mut self.buf,
                Version::V1_2,
                &Limits {
                    max_body_bytes: 1 << 24,
                    ..Limits::default()
                },
            ) {
                Ok(Some(Parsed::Frame(f))) => return Event::Frame(f),
                Ok(Some(Parsed::Heartbeat)) => return Event::Heartbeat,
                Ok(None) => {}
                Err(e) => panic!("server sent an unparseable frame: {e}"),
            }
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => self.buf.extend_from_slice(t.as_bytes()),
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    /// Next frame, skipping heart-beats; panics on close.
    pub async fn frame(&mut self) -> Frame {
        loop {
            match self.next().await {
                Event::Frame(f) => return f,
                Event::Heartbeat => continue,
                Event::Closed(code) => {
                    panic!("connection closed ({code:?}) while waiting for a frame")
                }
            }
        }
    }

    /// Next frame, which must be `command`.
    pub async fn expect(&mut self, command: Command) -> Frame {
        let f = self.frame().await;
        assert_eq!(f.command, command, "unexpected frame: {f:?}");
        f
    }

    /// Skips MESSAGE frames until one of `command` arrives.
    pub async fn expect_skipping_messages(&mut self, command: Command) -> Frame {
        loop {
            let f = self.frame().await;
            if f.command == command {
                return f;
            }
            assert_eq!(f.command, Command::Message, "unexpected frame: {f:?}");
        }
    }

    /// Waits for the connection to end; returns the close code if a close frame came.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Event::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// Expects an ERROR frame (skipping messages) and then the end of the connection.
    pub async fn expect_error(&mut self) -> Frame {
        let f = self.expect_skipping_messages(Command::Error).await;
        self.closed().await;
        f
    }

    /// Nothing but heart-beats for `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.next_event()).await {
                Err(_) => return true,
                Ok(Event::Heartbeat) => continue,
                Ok(_) => return false,
            }
        }
    }
}

/// Reads one HTTP GET from the gateway (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of a metric line (first sample whose name and labels start with `prefix`).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

impl Client {
    /// Reads one raw WebSocket message: Some(true) for data, Some(false) for close/error.
    pub async fn ws_next(&mut self) -> Option<bool> {
        match self.ws.next().await {
            Some(Ok(Message::Text(_) | Message::Binary(_))) => Some(true),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => None,
            Some(Ok(_)) => Some(true),
        }
    }
}
