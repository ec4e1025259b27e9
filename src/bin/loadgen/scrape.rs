//! Reads figures from the gateway's Prometheus endpoint (`/metrics`, plain HTTP on
//! loopback), for the scenarios whose figure is one of the gateway's own gauges
//! (`stompgate_history_bytes`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The metrics URL: `--metrics-url`, or the WebSocket URL's host and port with `/metrics`.
pub fn metrics_url(ws_hostport: &str, given: Option<&str>) -> String {
    given.map_or_else(|| format!("http://{ws_hostport}/metrics"), str::to_string)
}

/// The body of `GET url` (http:// on loopback only), or why not.
pub async fn get(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// metrics URLs are supported: {url}"))?;
    let (hostport, path) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let mut s = TcpStream::connect(hostport)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !s.peer_addr().is_ok_and(|a| a.ip().is_loopback()) {
        return Err(format!("{url}: not a loopback address"));
    }
    let req = format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "{url}: {}",
            head.lines().next().unwrap_or("no answer")
        ));
    }
    Ok(body.to_string())
}

/// The value of an unlabelled sample `name` in Prometheus text format.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_unlabelled_sample() {
        let t = "# HELP stompgate_history_bytes x\n# TYPE stompgate_history_bytes gauge\nstompgate_history_bytes 12345\nstompgate_history_bytes_other 1\nstompgate_resumes_total{outcome=\"gap\"} 2\n";
        assert_eq!(sample(t, "stompgate_history_bytes"), Some(12345.0));
        assert_eq!(sample(t, "stompgate_resumes_total"), None);
        assert_eq!(sample(t, "missing"), None);
    }
}
