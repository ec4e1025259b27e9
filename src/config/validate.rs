//! Checks of the settings that flag types alone cannot express (ranges, combinations,
//! replaced variables, market ids): each error names the setting and says what to change.

use super::Config;

impl Config {
    /// Checks settings that clap's types cannot; the message names the setting and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.outbox_bytes < 4096 {
            return Err(format!(
                "--outbox-bytes {} is too small: at least 4096 bytes are needed to hold one message",
                self.outbox_bytes
            ));
        }
        if !(self.demo_rate >= 0.0 && self.demo_rate <= 100_000.0) {
            return Err(format!(
                "--demo-rate {} must be between 0 and 100000 trades per second",
                self.demo_rate
            ));
        }
        if !(self.send_rate >= 0.0 && self.send_burst >= 1.0) {
            return Err("--send-rate must be >= 0 and --send-burst >= 1".into());
        }
        if self.max_write_bytes < 1024 {
            return Err(format!(
                "--max-write-bytes {} is too small: at least 1024",
                self.max_write_bytes
            ));
        }
        if self.live_feed && self.kafka_brokers.is_some() {
            return Err("--live-feed runs the exchange bridge on the embedded default only; with --kafka-brokers run `stompgate feed` as its own process".into());
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if std::env::var_os("STOMPGATE_TRUST_FORWARDED_FOR").is_some() {
            return Err("STOMPGATE_TRUST_FORWARDED_FOR was replaced by STOMPGATE_TRUSTED_PROXIES (--trusted-proxies): list the proxy addresses or networks whose X-Forwarded-For may be believed".into());
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(format!(
                "--ipv6-prefix {} must be between 1 and 128",
                self.ipv6_prefix
            ));
        }
        if !(self.connect_rate_per_ip >= 0.0 && self.connect_burst_per_ip >= 1.0) {
            return Err(
                "--connect-rate-per-ip must be >= 0 and --connect-burst-per-ip >= 1".into(),
            );
        }
        if self.max_http_connections == 0 {
            return Err("--max-http-connections must be at least 1".into());
        }
        if self.ws_max_write_buffer_bytes < self.outbox_bytes + 64 * 1024 {
            return Err(format!(
                "--ws-max-write-buffer-bytes {} must be at least --outbox-bytes + 65536 ({}): one write may carry a whole outbox",
                self.ws_max_write_buffer_bytes,
                self.outbox_bytes + 64 * 1024
            ));
        }
        if self.internal_port.is_some() && self.internal_port == Some(self.port) && self.port != 0 {
            return Err("--internal-port must differ from --port".into());
        }
        for m in &self.demo_markets {
            if !crate::destination::valid_market_id(m) {
                return Err(format!(
                    "--demo-markets: '{m}' is not a valid market id (letters, digits, '-', '_', '.'; at most 64)"
                ));
            }
        }
        Ok(())
    }
}
