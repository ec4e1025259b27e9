//! The `stompgate` binary: parse configuration, start the server, shut down gracefully on
//! SIGTERM or Ctrl-C. `stompgate feed ...` runs the exchange bridge instead (src/feed/).

use stompgate::config::Config;
use stompgate::server::Server;
use tracing_subscriber::EnvFilter;

// Logs go to stderr; stdout carries only the lines that say where the gateway listens.

fn main() {
    match stompgate::runtime::build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("stompgate: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    }
}

async fn run() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "feed") {
        return feed().await;
    }
    let config = match Config::load(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stompgate: {e}");
            std::process::exit(2);
        }
    };
    init_logs(config.log_json);
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

/// `stompgate feed ...`: the exchange bridge (see `stompgate feed --help`).
async fn feed() {
    let args = std::env::args_os()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, a)| a);
    let config = match stompgate::feed::FeedConfig::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stompgate feed: {e}");
            std::process::exit(2);
        }
    };
    init_logs(config.log_json());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    if let Err(e) = stompgate::feed::run(config, shutdown).await {
        eprintln!("stompgate feed: {e}");
        std::process::exit(2);
    }
}

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if json {
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
