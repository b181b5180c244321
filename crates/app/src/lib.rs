//! cache-demo: a product catalogue in PostgreSQL served through a Redis cache-aside layer.

pub mod cache;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod metrics;
pub mod recent;
pub mod state;
pub mod telemetry;
pub mod warm;

use std::future::Future;

use tokio::net::TcpListener;

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
    let app = http::router(state);
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    token.cancel();
    served
}
