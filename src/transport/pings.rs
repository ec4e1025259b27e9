//! The WebSocket pings a client may send per second.

/// Pings a client may send per second. Each ping makes the WebSocket layer queue a pong;
/// a client that floods pings and never reads would otherwise only be bounded by the
/// write buffer. Over the limit the connection is closed and counted.
#[derive(Default)]
pub struct PingLimit {
    /// 0: unlimited.
    max_per_second: u32,
    count: u32,
    window: Option<std::time::Instant>,
    /// Incremented when a connection is closed for it.
    refused: Option<prometheus::IntCounter>,
}

impl PingLimit {
    pub fn new(max_per_second: u32, refused: prometheus::IntCounter) -> PingLimit {
        PingLimit {
            max_per_second,
            refused: Some(refused),
            ..Default::default()
        }
    }

    /// Counts one ping; `Err` once the second's allowance is used up.
    pub(super) fn ping(&mut self) -> Result<(), String> {
        if self.max_per_second == 0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        match self.window {
            Some(start) if now.duration_since(start) < std::time::Duration::from_secs(1) => {
                self.count += 1
            }
            _ => {
                self.window = Some(now);
                self.count = 1;
            }
        }
        if self.count > self.max_per_second {
            if let Some(c) = self.refused.take() {
                c.inc();
            }
            return Err(format!(
                "ping flood: more than {} WebSocket pings in one second (--max-pings-per-second)",
                self.max_per_second
            ));
        }
        Ok(())
    }
}
