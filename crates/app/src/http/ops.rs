//! Operations: cache stats and flush, health and readiness probes, Prometheus metrics.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cache::{CounterSnapshot, L1Stats};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/flush-cache", post(flush))
        .route("/api/warm", post(warm))
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
    /// The in-process L1, when enabled.
    l1: Option<L1Stats>,
    /// Which caching patterns are switched on.
    patterns: Value,
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
    let circuit = cache.redis().breaker_state().label();
    let redis = match info {
        Ok(pairs) => {
            let mut obj = serde_json::Map::new();
            obj.insert("available".into(), Value::Bool(true));
            obj.insert("circuit".into(), Value::from(circuit));
            for (k, v) in pairs.into_iter().filter(|(k, _)| INFO_FIELDS.contains(&k.as_str())) {
                let value = v.parse::<u64>().map(Value::from).unwrap_or(Value::String(v));
                obj.insert(k, value);
            }
            Value::Object(obj)
        }
        Err(e) => json!({ "available": false, "circuit": circuit, "error": e.to_string() }),
    };
    let opts = cache.options();
    let config = &state.config;
    let patterns = json!({
        "single_flight": opts.single_flight,
        "stampede_lock": opts.stampede_lock,
        "ttl_jitter_pct": opts.ttl_jitter_pct,
        "circuit_breaker": cache.redis().breaker_enabled(),
        "l1": opts.l1.is_some(),
        "write_through": config.write_through,
        "warm_on_start": config.warm_on_start,
        "warm_interval_secs": config.warm_interval_secs,
        "invalidation_subscribed": cache.invalidation_subscribed(),
        "admin_token_required": config.admin_token.as_deref().is_some_and(|t| !t.is_empty()),
    });
    let ttl_secs = opts.ttls.iter().map(|(e, ttl)| (e.label(), ttl.as_secs())).collect();
    Json(Stats {
        counters: cache.counters(),
        keys: keys.ok().map(|k| k.len()),
        key_prefix: cache.keyspace().prefix().to_owned(),
        ttl_secs,
        db_delay_ms: state.db.delay().as_millis() as u64,
        uptime_secs: state.started.elapsed().as_secs(),
        redis,
        l1: cache.l1_stats(),
        patterns,
    })
}

async fn flush(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>> {
    super::admin::authorize(&state, &headers)?;
    let deleted =
        state.cache.flush().await.map_err(|e| Error::CacheUnavailable(format!("nothing was flushed: {e}")))?;
    tracing::info!(deleted, "cache flushed");
    Ok(Json(json!({ "deleted": deleted })))
}

async fn warm(State(state): State<AppState>) -> Result<Json<crate::warm::WarmReport>> {
    Ok(Json(crate::warm::warm(&state).await?))
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
