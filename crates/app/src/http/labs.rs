//! The dashboard's experiments (`/api/labs/...`) and the picture every replica shares (`/api/timeline`). Every
//! route that changes something takes the [`Admin`] token when one is set.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use cache_demo_api::Info;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Routes;
use super::extract::{Admin, ApiJson, ApiQuery};
use crate::cache::CacheKey;
use crate::catalog::{Target, TargetParams, input::validate_price, parse_id};
use crate::db::MAX_DELAY;
use crate::error::{Error, Result};
use crate::fleet::Timeline;
use crate::labs::{self, Pattern, Stampede, Traffic, TrafficStatus};
use crate::state::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/timeline", get(timeline))
        .route("/api/labs/db-delay", put(db_delay))
        .route("/api/labs/traffic", get(traffic).post(start_traffic).delete(stop_traffic))
        .route("/api/labs/staleness", get(staleness))
        .route("/api/labs/staleness/naive-write", post(naive_write))
        .route("/api/labs/eviction", get(eviction))
        .route("/api/labs/eviction/shrink", post(shrink))
        .route("/api/labs/eviction/restore", post(restore))
        .route("/api/labs/stampede", post(stampede))
}

/// The smallest `maxmemory` the eviction experiment sets: below it Redis has room for almost nothing.
pub const MIN_MAXMEMORY: u64 = 1024 * 1024;

async fn timeline(State(state): State<AppState>) -> Json<Timeline> {
    Json(state.fleet.timeline())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayBody {
    ms: u64,
}

/// `PUT /api/labs/db-delay {"ms": 50}`: the artificial delay of every query, on every replica.
async fn db_delay(State(state): State<AppState>, _: Admin, ApiJson(body): ApiJson<DelayBody>) -> Result<Json<Value>> {
    let max = MAX_DELAY.as_millis() as u64;
    if body.ms > max {
        return Err(Error::bad_request(format!("ms must be from 0 to {max}, got {}", body.ms)));
    }
    state.db.set_delay(Duration::from_millis(body.ms));
    // The other replicas take it from Redis at their next exchange; without Redis, only this one changes.
    let shared = state.cache.share_db_delay(body.ms).await.is_ok();
    tracing::info!(ms = body.ms, shared, "artificial database delay changed");
    Ok(Json(json!({ "db_delay_ms": body.ms, "all_replicas": shared })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficBody {
    pattern: Pattern,
    seconds: u64,
}

async fn traffic(State(state): State<AppState>) -> Json<TrafficStatus> {
    Json(state.traffic.status())
}

/// `POST /api/labs/traffic {"pattern": "uniform", "seconds": 60}`: reads through the cache in the background.
async fn start_traffic(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<TrafficBody>,
) -> Result<(StatusCode, Json<TrafficStatus>)> {
    let status = Traffic::start(&state, body.pattern, Duration::from_secs(body.seconds)).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

async fn stop_traffic(State(state): State<AppState>, _: Admin) -> Json<TrafficStatus> {
    Json(state.traffic.stop())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdParams {
    id: String,
}

#[derive(Debug, Serialize)]
struct Staleness {
    id: i32,
    key: String,
    database_price: f64,
    cached: bool,
    cached_price: Option<f64>,
    ttl_ms: Option<u64>,
    /// Redis serves a price that PostgreSQL no longer has.
    stale: bool,
}

/// `GET /api/labs/staleness?id=7`: the price in PostgreSQL and in Redis's entry, read directly (nothing filled).
async fn staleness(State(state): State<AppState>, ApiQuery(p): ApiQuery<IdParams>) -> Result<Json<Staleness>> {
    let id = parse_id(&p.id)?;
    let key = CacheKey::product(id);
    let database_price = state.db.price(id).await?.ok_or_else(|| Error::NotFound(format!("product {id}")))?;
    let entry = state.cache.peek(&key).await.map_err(Error::cache_unavailable)?;
    let cached_price = entry.as_ref().and_then(|(data, _)| price_of(data));
    Ok(Json(Staleness {
        id,
        key: state.cache.keyspace().full(&key),
        database_price,
        cached: entry.is_some(),
        cached_price,
        ttl_ms: entry.and_then(|(_, ttl)| ttl),
        stale: cached_price.is_some_and(|p| p != database_price),
    }))
}

/// The `price` of a cached product entry.
fn price_of(entry: &[u8]) -> Option<f64> {
    serde_json::from_slice::<Value>(entry).ok()?.get("price")?.as_f64()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NaiveWrite {
    id: i32,
    price: f64,
}

/// `POST /api/labs/staleness/naive-write {"id": 7, "price": 24.99}`: the price changed in PostgreSQL only,
/// skipping invalidation, to show what that costs. The API's own writes always invalidate.
async fn naive_write(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<NaiveWrite>,
) -> Result<Json<Value>> {
    let id = parse_id(&body.id.to_string())?;
    let price = validate_price(body.price)?;
    if !state.db.set_price_without_invalidation(id, price).await? {
        return Err(Error::NotFound(format!("product {id}")));
    }
    let key = CacheKey::product(id);
    let ttl_ms = state.cache.peek(&key).await.ok().flatten().and_then(|(_, ttl)| ttl);
    tracing::info!(product_id = id, "naive write: price changed without invalidation (dashboard experiment)");
    Ok(Json(json!({
        "id": id,
        "price": price,
        "key": state.cache.keyspace().full(&key),
        "ttl_ms": ttl_ms,
        "invalidated": false,
    })))
}

#[derive(Debug, Serialize)]
struct Eviction {
    maxmemory: u64,
    /// The size before the experiment first shrank it; null before that.
    configured_maxmemory: Option<u64>,
    shrunk: bool,
    used_memory: Option<u64>,
    evicted_keys: Option<u64>,
    policy: Option<String>,
    /// Product ids go up to this: the uniform traffic's range.
    products: i32,
    min_bytes: u64,
}

async fn eviction_status(state: &AppState) -> Result<Eviction> {
    let cache = &state.cache;
    let (info, configured, products) =
        tokio::join!(cache.info(), cache.configured_maxmemory(), state.db.max_product_id());
    let mut fields = Info::default();
    for (k, v) in &info.map_err(Error::cache_unavailable)? {
        fields.set(k, v);
    }
    let configured = configured.map_err(Error::cache_unavailable)?.or_else(|| state.fleet.configured_maxmemory());
    let maxmemory = fields.maxmemory.unwrap_or(0);
    Ok(Eviction {
        maxmemory,
        configured_maxmemory: configured,
        shrunk: configured.is_some_and(|c| c != maxmemory),
        used_memory: fields.used_memory,
        evicted_keys: fields.evicted_keys,
        policy: fields.maxmemory_policy,
        products: products?,
        min_bytes: MIN_MAXMEMORY,
    })
}

async fn eviction(State(state): State<AppState>) -> Result<Json<Eviction>> {
    Ok(Json(eviction_status(&state).await?))
}

/// The new limit: in bytes, or as room left above what Redis uses now (what a catalogue's worth of entries
/// must not fit in, whatever the server's own overhead).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum ShrinkBody {
    Maxmemory(u64),
    Headroom(u64),
}

/// Headroom the experiment may ask for.
const HEADROOM: std::ops::RangeInclusive<u64> = 64 * 1024..=64 * 1024 * 1024;

/// `POST /api/labs/eviction/shrink {"maxmemory": 2097152}` or `{"headroom": 262144}`: Redis's memory limit
/// lowered, the configured one remembered (in Redis, so any replica can restore it).
async fn shrink(State(state): State<AppState>, _: Admin, ApiJson(body): ApiJson<ShrinkBody>) -> Result<Json<Eviction>> {
    let cache = &state.cache;
    let now = cache.maxmemory().await.map_err(redis_refused)?;
    let maxmemory = match body {
        ShrinkBody::Maxmemory(bytes) => bytes,
        ShrinkBody::Headroom(bytes) if HEADROOM.contains(&bytes) => {
            let mut info = Info::default();
            for (k, v) in &cache.info().await.map_err(Error::cache_unavailable)? {
                info.set(k, v);
            }
            info.used_memory.unwrap_or(0) + bytes
        }
        ShrinkBody::Headroom(bytes) => {
            return Err(Error::bad_request(format!(
                "headroom must be from {} to {} bytes, got {bytes}",
                HEADROOM.start(),
                HEADROOM.end()
            )));
        }
    };
    let configured = known_configured(&state).await?.unwrap_or(now);
    let ceiling = if configured == 0 { u64::MAX } else { configured };
    if maxmemory < MIN_MAXMEMORY || maxmemory > ceiling {
        return Err(Error::bad_request(format!(
            "maxmemory must be from {MIN_MAXMEMORY} bytes to the configured {}",
            if configured == 0 { "limit (none is set)".to_owned() } else { format!("{configured} bytes") }
        )));
    }
    state.fleet.remember_configured_maxmemory(configured);
    cache.remember_configured_maxmemory(configured).await.map_err(Error::cache_unavailable)?;
    cache.set_maxmemory(maxmemory).await.map_err(redis_refused)?;
    tracing::info!(maxmemory, configured, "redis maxmemory shrunk (dashboard experiment)");
    Ok(Json(eviction_status(&state).await?))
}

/// `POST /api/labs/eviction/restore`: the configured `maxmemory` back.
async fn restore(State(state): State<AppState>, _: Admin) -> Result<Json<Eviction>> {
    let cache = &state.cache;
    let now = cache.maxmemory().await.map_err(redis_refused)?;
    let Some(configured) = known_configured(&state).await?.filter(|c| *c != now) else {
        return Err(Error::Conflict {
            field: "maxmemory",
            message: "maxmemory is not shrunk: nothing to restore".into(),
        });
    };
    cache.set_maxmemory(configured).await.map_err(redis_refused)?;
    tracing::info!(maxmemory = configured, "redis maxmemory restored");
    Ok(Json(eviction_status(&state).await?))
}

/// The configured `maxmemory`: from Redis, else as this replica remembers it (Redis may have evicted the key).
async fn known_configured(state: &AppState) -> Result<Option<u64>> {
    let stored = state.cache.configured_maxmemory().await.map_err(Error::cache_unavailable)?;
    Ok(stored.or_else(|| state.fleet.configured_maxmemory()))
}

/// Redis answered CONFIG with an error (an ACL without it, for one) or did not answer.
fn redis_refused(e: crate::cache::CacheError) -> Error {
    Error::CacheUnavailable { reason: format!("Redis did not change maxmemory: {e}"), key: None }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StampedeBody {
    requests: u32,
    single_flight: bool,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    id: Option<i64>,
}

/// `POST /api/labs/stampede {"requests": 50, "single_flight": true}`: one key removed, then read that many times
/// at once.
async fn stampede(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<StampedeBody>,
) -> Result<Json<Stampede>> {
    let target = Target::from_params(&TargetParams {
        endpoint: Some(body.endpoint.unwrap_or_else(|| "categories".into())),
        q: body.q,
        limit: None,
        id: body.id.map(|i| i.to_string()),
    })?;
    let _slot = state.admission.load_test()?;
    Ok(Json(labs::stampede(&state, &target, body.requests, body.single_flight).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_is_read_from_a_product_entry() {
        assert_eq!(price_of(br#"{"id":1,"price":19.99,"reviews":{}}"#), Some(19.99));
        assert_eq!(price_of(b"not json"), None);
        assert_eq!(price_of(br#"{"id":1}"#), None);
    }
}
