//! Operations: health and readiness probes, Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::Routes;
use crate::state::AppState;

pub fn routes() -> Routes {
    Routes::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// A constant body: a liveness probe (and the bench's ceiling) should cost no more than answering.
async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#)
}

/// Ready when PostgreSQL answers, or when every pooled connection is busy (PostgreSQL answered them: taking the
/// replica out of service would only move the load). Redis is reported but does not decide: without it the app
/// still serves.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let busy = state.db.saturated();
    let ping = async { if busy { Ok(()) } else { state.db.ping().await } };
    let (db, redis) = tokio::join!(ping, state.cache.ping());
    let postgres = match &db {
        Ok(()) if busy => json!({ "up": true, "busy": true }),
        Ok(()) => json!({ "up": true }),
        Err(e) => json!({ "up": false, "error": e.to_string() }),
    };
    let circuit = state.cache.redis().breaker_state().label();
    let redis = match &redis {
        Ok(()) => json!({ "up": true, "circuit": circuit }),
        Err(e) => json!({
            "up": false,
            "circuit": circuit,
            "error": e.to_string(),
            "impact": "requests are answered from PostgreSQL",
        }),
    };
    let (status, word) =
        if db.is_ok() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") };
    (status, Json(json!({ "status": word, "postgres": postgres, "redis": redis })))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
