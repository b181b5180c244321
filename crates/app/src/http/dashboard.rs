//! The dashboard: its page and assets (embedded in the binary), and the API behind it: one comparison of
//! database and cache, a server-side load test, a key's TTL, and the recent requests.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Routes;
use super::extract::{ApiJson, ApiQuery};
use crate::cache::{Outcome, Via};
use crate::catalog::{Target, TargetParams};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/assets/labs.js", get(|| async { asset("text/javascript; charset=utf-8", LABS_JS) }))
        .route("/assets/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/compare", get(compare))
        .route("/api/load-test", post(load_test))
        .route("/api/ttl", get(ttl))
        .route("/api/recent", get(recent))
}

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const LABS_JS: &str = include_str!("../../assets/labs.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// The page runs only its own files: no inline script, style attribute or handler, nothing from elsewhere, no
/// framing (clickjacking the flush button), no form posting away.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

pub const MAX_ROUNDS: u32 = 1000;
pub const DEFAULT_ROUNDS: u32 = 10;
/// A load test stops after this long even if rounds remain (a slow database with a large round count).
const LOAD_TEST_BUDGET: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize)]
struct Measured {
    ms: f64,
    /// `HIT`, `MISS` or `BYPASS` (`MISS` also when Redis failed; see `redis_error`).
    x_cache: &'static str,
    source: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    redis_error: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Fetches through the given path and times it on the server, like `elapsed_ms` of the public endpoints.
async fn measure(state: &AppState, target: &Target, via: Via) -> Result<Measured> {
    let started = Instant::now();
    let cached = target.fetch(state, via).await?;
    Ok(Measured {
        ms: ms(started.elapsed()),
        x_cache: cached.outcome.header(),
        source: cached.outcome.source(),
        redis_error: cached.outcome == Outcome::Error,
    })
}

fn speedup(database_ms: f64, cache_ms: f64) -> Option<f64> {
    (cache_ms > 0.0).then(|| database_ms / cache_ms)
}

/// How many times faster the cache answered: only for a hit. A miss also queried PostgreSQL, so a "speedup" of a
/// miss would only measure which of the two requests found a warmer connection.
fn hit_speedup(database_ms: f64, cache: &Measured) -> Option<f64> {
    if cache.x_cache == "HIT" { speedup(database_ms, cache.ms) } else { None }
}

/// `GET /api/compare?endpoint=...`: the request straight from PostgreSQL and through the cache, in turns.
async fn compare(State(state): State<AppState>, ApiQuery(p): ApiQuery<TargetParams>) -> Result<impl IntoResponse> {
    let target = Target::from_params(&p)?;
    // The two paths take turns going first, so neither always gets the colder connection.
    let cache_first = state.compare_cache_first.fetch_xor(true, Ordering::Relaxed);
    let (database, cache) = if cache_first {
        let cache = measure(&state, &target, Via::Cache).await?;
        (measure(&state, &target, Via::DatabaseOnly).await?, cache)
    } else {
        let database = measure(&state, &target, Via::DatabaseOnly).await?;
        (database, measure(&state, &target, Via::Cache).await?)
    };
    Ok(Json(json!({
        "target": target,
        "path": target.path(),
        "key": state.cache.keyspace().full(&target.key()),
        "speedup": hit_speedup(database.ms, &cache),
        "first": if cache_first { "cache" } else { "database" },
        "database": database,
        "cache": cache,
        "db_delay_ms": state.db.delay().as_millis() as u64,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadTestBody {
    endpoint: String,
    #[serde(default)]
    rounds: Option<u32>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    id: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Round {
    round: u32,
    database_ms: f64,
    cache_ms: f64,
    cache_x_cache: &'static str,
}

/// Percentiles of one path's round times.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    pub mean: f64,
}

/// Nearest-rank percentiles; `None` for no samples.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Some(Summary {
        p50: rank(0.50),
        p95: rank(0.95),
        max: sorted[sorted.len() - 1],
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
    })
}

/// `POST /api/load-test {endpoint, rounds}`: `rounds` times the database path, then the cache path. One at a
/// time per replica: another is a 429 with `Retry-After`.
async fn load_test(State(state): State<AppState>, ApiJson(body): ApiJson<LoadTestBody>) -> Result<impl IntoResponse> {
    let rounds = body.rounds.unwrap_or(DEFAULT_ROUNDS);
    if !(1..=MAX_ROUNDS).contains(&rounds) {
        return Err(Error::bad_request(format!("rounds must be from 1 to {MAX_ROUNDS}, got {rounds}")));
    }
    let target = Target::from_params(&TargetParams {
        endpoint: Some(body.endpoint),
        q: body.q,
        limit: body.limit.map(|l| l.to_string()),
        id: body.id.map(|i| i.to_string()),
    })?;
    let _slot = state.admission.load_test()?;
    let started = Instant::now();
    let mut results = Vec::with_capacity(rounds as usize);
    for round in 1..=rounds {
        if started.elapsed() > LOAD_TEST_BUDGET {
            break;
        }
        let database = measure(&state, &target, Via::DatabaseOnly).await?;
        let cache = measure(&state, &target, Via::Cache).await?;
        results.push(Round { round, database_ms: database.ms, cache_ms: cache.ms, cache_x_cache: cache.x_cache });
    }
    let db = summarize(&results.iter().map(|r| r.database_ms).collect::<Vec<_>>());
    let cache = summarize(&results.iter().map(|r| r.cache_ms).collect::<Vec<_>>());
    let speedup_p50 = db.as_ref().zip(cache.as_ref()).and_then(|(d, c)| speedup(d.p50, c.p50));
    Ok(Json(json!({
        "target": target,
        "path": target.path(),
        "requested_rounds": rounds,
        "completed_rounds": results.len(),
        "truncated": results.len() < rounds as usize,
        "rounds": results,
        "summary": { "database": db, "cache": cache, "speedup_p50": speedup_p50 },
        "db_delay_ms": state.db.delay().as_millis() as u64,
        "total_ms": ms(started.elapsed()),
    })))
}

/// `GET /api/ttl?endpoint=...`: the Redis `TTL` of that endpoint's key.
async fn ttl(State(state): State<AppState>, ApiQuery(p): ApiQuery<TargetParams>) -> Result<impl IntoResponse> {
    let target = Target::from_params(&p)?;
    let key = target.key();
    let configured = state.cache.options().ttls.get(key.endpoint).as_secs();
    let full = state.cache.keyspace().full(&key);
    match state.cache.ttl(&key).await {
        Ok(ttl) => Ok(Json(
            json!({ "key": full, "exists": ttl.is_some(), "ttl_secs": ttl, "configured_ttl_secs": configured }),
        )),
        Err(e) => Err(Error::CacheUnavailable { reason: e.to_string(), key: Some(full) }),
    }
}

async fn recent(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "requests": state.fleet.recent(&state.recent) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&samples).expect("summary");
        assert_eq!((s.p50, s.p95, s.max), (50.0, 95.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-9);
        let one = summarize(&[3.0]).expect("summary");
        assert_eq!((one.p50, one.p95, one.max, one.mean), (3.0, 3.0, 3.0, 3.0));
        assert_eq!(summarize(&[]), None);
        let ten: Vec<f64> = vec![9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 10.0];
        let s = summarize(&ten).expect("summary");
        assert_eq!((s.p50, s.p95, s.max), (5.0, 10.0, 10.0));
    }

    #[test]
    fn speedup_needs_a_positive_cache_time() {
        assert_eq!(speedup(10.0, 0.5), Some(20.0));
        assert_eq!(speedup(10.0, 0.0), None);
    }

    #[test]
    fn a_miss_has_no_speedup() {
        let measured = |x_cache| Measured { ms: 0.5, x_cache, source: "cache", redis_error: false };
        assert_eq!(hit_speedup(10.0, &measured("HIT")), Some(20.0));
        assert_eq!(hit_speedup(10.0, &measured("MISS")), None);
    }
}
