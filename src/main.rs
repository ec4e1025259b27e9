//! The `stompgate` binary: parse configuration, start the server, shut down gracefully on
//! SIGTERM or Ctrl-C.

use stompgate::config::Config;
use stompgate::server::Server;
use tracing_subscriber::EnvFilter;

// Logs go to stderr; stdout carries only the lines that say where the gateway listens.

#[tokio::main]
async fn main() {
    let config = match Config::load(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stompgate: {e}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stompgate: {e}");
            std::process::exit(2);
        }
    };
    let shown = if server.addr.ip().is_unspecified() {
        std::net::SocketAddr::new([127, 0, 0, 1].into(), server.addr.port())
    } else {
        server.addr
    };
    println!("stompgate listening on http://{shown}");
    if let Some(internal) = server.internal_addr {
        println!("stompgate internal port on http://{internal}");
    }
    if let Some(tcp) = server.tcp_addr {
        println!("stompgate STOMP over TCP on {tcp}");
    }
    wait_for_signal().await;
    server.shutdown().await;
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
