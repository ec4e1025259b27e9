//! The WebSocket client, written by hand to stay cheap on a machine it shares with the
//! server: one reused read buffer per connection, frames parsed in place, many frames per
//! read, client frames masked with a zero key (a valid mask that needs no XOR pass).

use std::net::{Ipv4Addr, SocketAddr};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub struct Target {
    pub addr: SocketAddr,
    pub upgrade: Vec<u8>,
}

pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((hostport.to_string(), path.to_string()))
}

pub fn upgrade_request(hostport: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp\r\n\r\n"
    )
    .into_bytes()
}

/// Appends one masked (zero key) client frame.
pub fn ws_frame(out: &mut Vec<u8>, opcode: u8, payload_parts: &[&[u8]]) {
    let len: usize = payload_parts.iter().map(|p| p.len()).sum();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    for p in payload_parts {
        out.extend_from_slice(p);
    }
}

pub struct WsFrame {
    pub opcode: u8,
    pub p0: usize,
    pub p1: usize,
}

/// A server-to-client frame header at the start of `b`: (opcode, header length, payload length).
#[inline]
pub fn parse_ws_header(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut hl) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([b[2], b[3]]) as usize, 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if masked {
        hl += 4;
    }
    if b.len() < hl + len {
        return None;
    }
    Some((opcode, hl, len))
}

pub struct Conn {
    pub s: TcpStream,
    pub buf: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

impl Conn {
    pub async fn open(t: &Target, src: Ipv4Addr, read_buf: usize) -> std::io::Result<Conn> {
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(SocketAddr::new(src.into(), 0))?;
        let mut s = sock.connect(t.addr).await?;
        s.set_nodelay(true)?;
        s.write_all(&t.upgrade).await?;
        let mut buf = vec![0u8; read_buf.max(4096)];
        let mut end = 0;
        loop {
            let n = s.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed during the WebSocket upgrade"));
            }
            end += n;
            if let Some(i) = memmem::find(&buf[..end], b"\r\n\r\n") {
                let head = &buf[..i];
                let status = head.split(|&c| c == b'\n').next().unwrap_or(b"");
                if memmem::find(status, b" 101").is_none() {
                    return Err(std::io::Error::other(format!(
                        "upgrade refused: {}",
                        String::from_utf8_lossy(status).trim()
                    )));
                }
                let start = i + 4;
                return Ok(Conn { s, buf, start, end });
            }
            if end == buf.len() {
                return Err(std::io::Error::other("upgrade response too large"));
            }
        }
    }

    /// Next complete frame; its payload is `buf[p0..p1]` until the next call.
    pub async fn next_frame(&mut self) -> std::io::Result<WsFrame> {
        loop {
            if let Some((opcode, hl, len)) = parse_ws_header(&self.buf[self.start..self.end]) {
                let p0 = self.start + hl;
                let p1 = p0 + len;
                self.start = p1;
                return Ok(WsFrame { opcode, p0, p1 });
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 && self.buf.len() - self.end < 2048 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            let n = self.s.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            self.end += n;
        }
    }

    pub async fn send_text(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 16);
        ws_frame(&mut out, 0x1, &[payload]);
        self.s.write_all(&out).await
    }

    /// Reads until a STOMP frame whose command is `want` arrives (answers pings on the way).
    pub async fn expect(&mut self, want: &[u8]) -> std::io::Result<()> {
        loop {
            let f = self.next_frame().await?;
            match f.opcode {
                0x8 => return Err(std::io::Error::other("WebSocket close from the server")),
                0x9 => {
                    let p = self.buf[f.p0..f.p1].to_vec();
                    let mut out = Vec::new();
                    ws_frame(&mut out, 0xA, &[&p]);
                    self.s.write_all(&out).await?;
                }
                0x0..=0x2 => {
                    let p = skip_eols(&self.buf[f.p0..f.p1]);
                    if p.starts_with(want) {
                        return Ok(());
                    }
                    if p.starts_with(b"ERROR") {
                        return Err(std::io::Error::other(format!(
                            "STOMP ERROR: {}",
                            String::from_utf8_lossy(&p[..p.len().min(300)])
                                .replace(['\n', '\0'], " ")
                        )));
                    }
                }
                _ => {}
            }
        }
    }
}

pub fn skip_eols(p: &[u8]) -> &[u8] {
    let i = p
        .iter()
        .position(|&c| c != b'\n' && c != b'\r')
        .unwrap_or(p.len());
    &p[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_header_roundtrip() {
        let mut out = Vec::new();
        ws_frame(&mut out, 1, &[&[b'a'; 300]]);
        // Client frames are masked: header 2 + 2 (length) + 4 (key).
        assert_eq!(parse_ws_header(&out), Some((1, 8, 300)));
        assert_eq!(parse_ws_header(&out[..100]), None);
    }
}
