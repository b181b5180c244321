//! cache-demo: a product catalogue in PostgreSQL served through a Redis cache-aside layer.

// Only `config`, `state`, `telemetry` and `ProductLookup` are used by other crates (the binary, the tests, the
// bench and its reference server); everything else is private to the crate, so the compiler reports what
// nothing uses.
pub(crate) mod admission;
pub(crate) mod cache;
pub(crate) mod catalog;
pub mod config;
pub(crate) mod db;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod http;
pub(crate) mod labs;
pub(crate) mod metrics;
pub(crate) mod recent;
pub(crate) mod server;
pub mod state;
pub mod telemetry;
pub(crate) mod timer;
pub(crate) mod warm;

use std::future::Future;

use tokio::net::TcpListener;

pub use crate::cache::ProductLookup;
pub use crate::config::Config;
pub use crate::state::AppState;

/// Serves the app on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    warm::spawn(state.clone());
    let limits = server::Limits {
        header_read_timeout: state.config.http_header_read_timeout(),
        max_connections: state.config.http_max_connections as usize,
    };
    let app = http::app(state);
    let served = server::run(listener, app, limits, shutdown).await;
    token.cancel();
    served
}
