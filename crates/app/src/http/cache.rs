//! The cache as a resource: its statistics, the flush, warming, and the admin routes over this app's keys:
//! list (SCAN, bounded, with TTLs) and delete (SCAN + UNLINK). Patterns are relative to the app's prefix and
//! can never reach other keys. With `ADMIN_TOKEN` set, the admin routes and the flush need
//! `Authorization: Bearer <token>` (the [`Admin`] extractor).

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extract::{Admin, ApiQuery};
use crate::cache::{CounterSnapshot, L1Stats};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/flush-cache", post(flush))
        .route("/api/warm", post(warm))
        .route("/admin/cache/keys", get(list).delete(delete))
}

pub const MAX_KEYS: usize = 1000;
const DEFAULT_KEYS: usize = 100;

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

/// `GET /api/stats`: the dashboard's numbers.
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

/// `POST /api/flush-cache`: every key of this app deleted, the counters reset.
async fn flush(State(state): State<AppState>, _: Admin) -> Result<Json<Value>> {
    let deleted = state
        .cache
        .flush()
        .await
        .map_err(|e| Error::CacheUnavailable { reason: format!("nothing was flushed: {e}"), key: None })?;
    tracing::info!(deleted, "cache flushed");
    Ok(Json(json!({ "deleted": deleted })))
}

/// `POST /api/warm`: load the warm set now.
async fn warm(State(state): State<AppState>) -> Result<Json<crate::warm::WarmReport>> {
    Ok(Json(crate::warm::warm(&state).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysParams {
    pattern: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct KeyInfo {
    key: String,
    /// Seconds left; null when the key has no expiry.
    ttl_secs: Option<i64>,
}

/// `GET /admin/cache/keys?pattern=&limit=`: this app's keys matching the pattern, with their TTLs.
async fn list(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<KeysParams>,
    _: Admin,
) -> Result<Json<serde_json::Value>> {
    let pattern = state.cache.keyspace().admin_pattern(p.pattern.as_deref().unwrap_or("*"))?;
    let limit = match p.limit.as_deref() {
        None => DEFAULT_KEYS,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_KEYS).contains(&n) => n,
            _ => return Err(Error::bad_request(format!("limit must be an integer from 1 to {MAX_KEYS}, got {raw:?}"))),
        },
    };
    let (keys, truncated) = state.cache.scan_matching(&pattern, limit).await.map_err(Error::cache_unavailable)?;
    let ttls = state.cache.ttls_of(&keys).await.map_err(Error::cache_unavailable)?;
    let keys: Vec<KeyInfo> = keys
        .into_iter()
        .zip(ttls)
        .filter(|(_, ttl)| *ttl != -2)
        .map(|(key, ttl)| KeyInfo { key, ttl_secs: (ttl >= 0).then_some(ttl) })
        .collect();
    Ok(Json(serde_json::json!({ "pattern": pattern, "count": keys.len(), "truncated": truncated, "keys": keys })))
}

/// `DELETE /admin/cache/keys?pattern=`: SCAN + UNLINK of the matching keys.
async fn delete(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<KeysParams>,
    _: Admin,
) -> Result<Json<serde_json::Value>> {
    if p.limit.is_some() {
        return Err(Error::bad_request("delete takes no limit"));
    }
    let raw = p.pattern.as_deref().ok_or_else(|| Error::bad_request("pattern is required"))?;
    let pattern = state.cache.keyspace().admin_pattern(raw)?;
    let deleted = state.cache.unlink_pattern(&pattern).await.map_err(Error::cache_unavailable)?;
    tracing::info!(pattern = %pattern, deleted, "admin deleted cache keys");
    Ok(Json(serde_json::json!({ "pattern": pattern, "deleted": deleted })))
}
