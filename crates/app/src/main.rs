use std::time::Duration;

use anyhow::Context;
use cache_demo::{AppState, Config, telemetry};
use clap::Parser;
use tokio::net::TcpListener;

/// mimalloc: fewer cycles per allocation than glibc's malloc on the request path, and no per-thread arenas
/// that grow the resident set.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let listen = config.listen_addr;
    if config.writes_open_to_network() {
        tracing::warn!(addr = %listen, "ADMIN_TOKEN is not set: anyone who reaches this address can change products and flush the cache");
    }
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let state = AppState::new(config)?;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listen, "cache-demo listening: open http://{listen}/");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cache_demo::serve(state, listener, async {
        let _ = rx.await;
    }));
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = tx.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(joined) => joined.context("server task failed")?.context("server failed")?,
        Err(_) => tracing::warn!("grace period over: closing remaining connections"),
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
