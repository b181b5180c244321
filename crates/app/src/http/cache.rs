//! The cache as a resource: its statistics, the flush, warming, and the admin routes over this app's keys:
//! list (SCAN, bounded, with TTLs) and delete (SCAN + UNLINK). Patterns are relative to the app's prefix and
//! can never reach other keys. With `ADMIN_TOKEN` set, the admin routes, the flush and warming need
//! `Authorization: Bearer <token>` (the [`Admin`] extractor).

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use cache_demo_api::{Info, Patterns, Redis, Stats};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Routes;
use super::extract::{Admin, ApiQuery};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/stats", get(stats))
        .route("/api/flush-cache", post(flush))
        .route("/api/warm", post(warm))
        .route("/admin/cache/keys", get(list).delete(delete))
}

pub const MAX_KEYS: usize = 1000;
const DEFAULT_KEYS: usize = 100;

/// `GET /api/stats`: the dashboard's numbers.
async fn stats(State(state): State<AppState>) -> Json<Stats> {
    let cache = &state.cache;
    let (keys, info) = tokio::join!(cache.count_keys(), cache.info());
    let circuit = cache.redis().breaker_state().label().to_owned();
    let redis = match info {
        Ok(pairs) => {
            let mut info = Info::default();
            for (k, v) in &pairs {
                info.set(k, v);
            }
            Redis { available: true, circuit, error: None, info }
        }
        Err(e) => Redis { available: false, circuit, error: Some(e.to_string()), info: Info::default() },
    };
    let opts = cache.options();
    let config = &state.config;
    let patterns = Patterns {
        single_flight: opts.single_flight,
        stampede_lock: opts.stampede_lock,
        ttl_jitter_pct: opts.ttl_jitter_pct,
        circuit_breaker: cache.redis().breaker_enabled(),
        l1: opts.l1.is_some(),
        write_through: config.write_through,
        warm_on_start: config.warm_on_start,
        warm_interval_secs: config.warm_interval_secs,
        invalidation_subscribed: cache.invalidation_subscribed(),
        admin_token_required: config.admin_token().is_some(),
    };
    Json(Stats {
        counters: cache.counters(),
        keys: keys.ok().flatten(),
        key_prefix: cache.keyspace().prefix().to_owned(),
        ttl_secs: opts.ttls.iter().map(|(e, ttl)| (e.label().to_owned(), ttl.as_secs())).collect(),
        db_delay_ms: state.db.delay().as_millis() as u64,
        uptime_secs: state.started.elapsed().as_secs(),
        redis,
        l1: Some(cache.l1_stats()),
        patterns: Some(patterns),
        replica: Some(state.fleet.id().to_owned()),
        fleet: Some(state.fleet.counters(&state)),
    })
}

/// `POST /api/flush-cache`: every cached entry of this app deleted, the counters reset (`Cache::flush`).
async fn flush(State(state): State<AppState>, _: Admin) -> Result<Json<Value>> {
    let deleted = state
        .cache
        .flush()
        .await
        .map_err(|e| Error::CacheUnavailable { reason: format!("nothing was flushed: {e}"), key: None })?;
    state.fleet.flushed(&state).await;
    tracing::info!(deleted, "cache flushed");
    Ok(Json(json!({ "deleted": deleted })))
}

/// `POST /api/warm`: load the warm set now.
async fn warm(State(state): State<AppState>, _: Admin) -> Result<Json<crate::warm::WarmReport>> {
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
