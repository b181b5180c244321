//! Admin routes over this app's keys: list (SCAN, bounded, with TTLs) and delete (SCAN + UNLINK). Patterns are
//! relative to the app's prefix and can never reach other keys. With `ADMIN_TOKEN` set, these routes and the
//! flush need `Authorization: Bearer <token>`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::ApiQuery;
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/cache/keys", get(list).delete(delete))
}

pub const MAX_KEYS: usize = 1000;
const DEFAULT_KEYS: usize = 100;

/// Checks the bearer token when one is configured.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<()> {
    let Some(expected) = state.config.admin_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) { Ok(()) } else { Err(Error::Unauthorized) }
}

/// Compares without stopping at the first difference, so timing does not reveal how much of a guess is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<KeysParams>,
) -> Result<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    let pattern = state.cache.keyspace().admin_pattern(p.pattern.as_deref().unwrap_or("*"))?;
    let limit = match p.limit.as_deref() {
        None => DEFAULT_KEYS,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_KEYS).contains(&n) => n,
            _ => return Err(Error::bad_request(format!("limit must be an integer from 1 to {MAX_KEYS}, got {raw:?}"))),
        },
    };
    let unavailable = |e: crate::cache::CacheError| Error::CacheUnavailable(e.to_string());
    let (keys, truncated) = state.cache.scan_matching(&pattern, limit).await.map_err(unavailable)?;
    let ttls = state.cache.ttls_of(&keys).await.map_err(unavailable)?;
    let keys: Vec<KeyInfo> = keys
        .into_iter()
        .zip(ttls)
        .filter(|(_, ttl)| *ttl != -2)
        .map(|(key, ttl)| KeyInfo { key, ttl_secs: (ttl >= 0).then_some(ttl) })
        .collect();
    Ok(Json(serde_json::json!({ "pattern": pattern, "count": keys.len(), "truncated": truncated, "keys": keys })))
}

async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<KeysParams>,
) -> Result<Json<serde_json::Value>> {
    authorize(&state, &headers)?;
    if p.limit.is_some() {
        return Err(Error::bad_request("delete takes no limit"));
    }
    let raw = p.pattern.as_deref().ok_or_else(|| Error::bad_request("pattern is required"))?;
    let pattern = state.cache.keyspace().admin_pattern(raw)?;
    let deleted = state.cache.unlink_pattern(&pattern).await.map_err(|e| Error::CacheUnavailable(e.to_string()))?;
    tracing::info!(pattern = %pattern, deleted, "admin deleted cache keys");
    Ok(Json(serde_json::json!({ "pattern": pattern, "deleted": deleted })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
