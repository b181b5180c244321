//! The response of a cacheable GET: the stored JSON bytes wrapped, without re-encoding, in
//! `{"source": ..., "elapsed_ms": ..., "data": <stored bytes>}`, with `X-Cache` and `Server-Timing` headers.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::cache::{Cached, Outcome};

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const X_CACHE_ERROR: HeaderName = HeaderName::from_static("x-cache-error");
pub const X_CACHE_LEVEL: HeaderName = HeaderName::from_static("x-cache-level");
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

pub struct CachedResponse {
    pub cached: Cached,
    pub started: Instant,
    /// Artificial database delay in force, reported when non-zero.
    pub db_delay: Duration,
}

/// Milliseconds with three decimals, from integer microseconds (no float formatting on the hot path).
struct Ms(Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        write!(f, "{}.{:03}", us / 1000, us % 1000)
    }
}

impl IntoResponse for CachedResponse {
    fn into_response(self) -> Response {
        let Cached { data, outcome, level, redis_time, db_time, .. } = self.cached;
        let elapsed = self.started.elapsed();
        let mut body = Vec::with_capacity(data.len() + 96);
        // Writing into a Vec cannot fail.
        let _ = write!(body, r#"{{"source":"{}","elapsed_ms":{},"#, outcome.source(), Ms(elapsed));
        if !self.db_delay.is_zero() {
            let _ = write!(body, r#""db_delay_ms":{},"#, self.db_delay.as_millis());
        }
        body.extend_from_slice(br#""data":"#);
        body.extend_from_slice(&data);
        body.push(b'}');

        let mut timing = String::with_capacity(64);
        let _ = write!(timing, "total;dur={}", Ms(elapsed));
        if let Some(t) = redis_time {
            let _ = write!(timing, ", redis;dur={}", Ms(t));
        }
        if let Some(t) = db_time {
            let _ = write!(timing, ", db;dur={}", Ms(t));
        }
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_CACHE, HeaderValue::from_static(outcome.header()));
        if let Some(level) = level {
            headers.insert(X_CACHE_LEVEL, HeaderValue::from_static(level.label()));
        }
        if outcome == Outcome::Error {
            headers.insert(X_CACHE_ERROR, HeaderValue::from_static("redis unavailable"));
        }
        if let Ok(v) = HeaderValue::from_str(&timing) {
            headers.insert(SERVER_TIMING, v);
        }
        response.extensions_mut().insert(outcome);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_have_three_decimals() {
        assert_eq!(Ms(Duration::from_micros(1_234_567)).to_string(), "1234.567");
        assert_eq!(Ms(Duration::from_micros(58)).to_string(), "0.058");
        assert_eq!(Ms(Duration::from_nanos(400)).to_string(), "0.000");
    }
}
