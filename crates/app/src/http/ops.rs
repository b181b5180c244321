//! Operations: cache stats and flush, health and readiness probes, Prometheus metrics.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cache::CounterSnapshot;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/flush-cache", post(flush))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[derive(Serialize)]
struct Stats {
    #[serde(flatten)]
    counters: CounterSnapshot,
    /// Keys under this app's prefix (SCAN); null when Redis is unavailable.
    keys: Option<usize>,
    key_prefix: String,
    ttl_secs: HashMap<&'static str, u64>,
    db_delay_ms: u64,
    uptime_secs: u64,
    redis: Value,
}

/// `INFO` fields shown in the stats (numbers as numbers).
const INFO_FIELDS: &[&str] = &[
    "redis_version",
    "used_memory",
    "used_memory_human",
    "used_memory_peak_human",
    "maxmemory",
    "maxmemory_human",
    "maxmemory_policy",
    "evicted_keys",
    "expired_keys",
    "keyspace_hits",
    "keyspace_misses",
];

async fn stats(State(state): State<AppState>) -> Json<Stats> {
    let cache = &state.cache;
    let (keys, info) = tokio::join!(cache.scan_keys(), cache.info());
    let redis = match info {
        Ok(pairs) => {
            let mut obj = serde_json::Map::new();
            obj.insert("available".into(), Value::Bool(true));
            for (k, v) in pairs.into_iter().filter(|(k, _)| INFO_FIELDS.contains(&k.as_str())) {
                let value = v.parse::<u64>().map(Value::from).unwrap_or(Value::String(v));
                obj.insert(k, value);
            }
            Value::Object(obj)
        }
        Err(e) => json!({ "available": false, "error": e.to_string() }),
    };
    let ttls = cache.ttls();
    let ttl_secs = HashMap::from([
        ("categories", ttls.categories.as_secs()),
        ("products_search", ttls.search.as_secs()),
        ("top_products", ttls.top_products.as_secs()),
        ("product", ttls.product.as_secs()),
    ]);
    Json(Stats {
        counters: cache.counters(),
        keys: keys.ok().map(|k| k.len()),
        key_prefix: cache.keyspace().prefix().to_owned(),
        ttl_secs,
        db_delay_ms: state.db.delay().as_millis() as u64,
        uptime_secs: state.started.elapsed().as_secs(),
        redis,
    })
}

async fn flush(State(state): State<AppState>) -> impl IntoResponse {
    match state.cache.flush().await {
        Ok(deleted) => {
            tracing::info!(deleted, "cache flushed");
            (StatusCode::OK, Json(json!({ "deleted": deleted })))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "redis unavailable: nothing was flushed", "detail": e.to_string() })),
        ),
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when PostgreSQL answers. Redis is reported but does not decide: without it the app still serves.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (db, redis) = tokio::join!(state.db.ping(), state.cache.ping());
    let postgres = match &db {
        Ok(()) => json!({ "up": true }),
        Err(e) => json!({ "up": false, "error": e.to_string() }),
    };
    let redis = match &redis {
        Ok(()) => json!({ "up": true }),
        Err(e) => json!({ "up": false, "error": e.to_string(), "impact": "requests are answered from PostgreSQL" }),
    };
    let (status, word) =
        if db.is_ok() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") };
    (status, Json(json!({ "status": word, "postgres": postgres, "redis": redis })))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
