//! The gateway binary as a child process on free loopback ports, for the tests that measure
//! the process from outside (its memory, its CPU time) or attack it with raw sockets.
//! `STOMPGATE_TEST_BIN` runs the same tests against another build (to compare).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running gateway; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    /// The public port.
    pub addr: SocketAddr,
    /// The internal port, when `--internal-port` was given.
    pub internal: Option<SocketAddr>,
}

impl GatewayProcess {
    /// Starts the binary with `args` after `--bind 127.0.0.1 --port 0 --drain-delay-ms 0`,
    /// and waits until it says where it listens.
    pub fn spawn(args: &[&str]) -> GatewayProcess {
        let bin = std::env::var("STOMPGATE_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_stompgate").to_string());
        let mut child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--drain-delay-ms",
                "0",
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the stompgate binary starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut addr = None;
        let mut internal = None;
        let wants_internal = args.contains(&"--internal-port");
        while addr.is_none() || (wants_internal && internal.is_none()) {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("the gateway exited before listening");
            }
            let parsed = line
                .trim()
                .rsplit("http://")
                .next()
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if line.contains("internal port") {
                internal = parsed;
            } else if line.contains("listening on") {
                addr = parsed;
            }
        }
        GatewayProcess {
            child,
            addr: addr.unwrap(),
            internal,
        }
    }

    /// Resident memory of the gateway process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// CPU time the gateway process used so far (user + system).
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
