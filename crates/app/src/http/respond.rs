//! The response of a cacheable GET: the stored JSON bytes wrapped, without re-encoding, in
//! `{"source": ..., "elapsed_ms": ..., "data": <stored bytes>}`, with `X-Cache` and `Server-Timing` headers.

use std::fmt::Write as _;
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl IntoResponse for CachedResponse {
    fn into_response(self) -> Response {
        let Cached { data, outcome, level, redis_time, db_time, .. } = self.cached;
        let elapsed = self.started.elapsed();
        let mut head = String::with_capacity(96);
        let _ = write!(head, r#"{{"source":"{}","elapsed_ms":{:.3},"#, outcome.source(), ms(elapsed));
        if !self.db_delay.is_zero() {
            let _ = write!(head, r#""db_delay_ms":{},"#, self.db_delay.as_millis());
        }
        head.push_str(r#""data":"#);
        let mut body = Vec::with_capacity(head.len() + data.len() + 1);
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&data);
        body.push(b'}');

        let mut timing = format!("total;dur={:.3}", ms(elapsed));
        if let Some(t) = redis_time {
            let _ = write!(timing, ", redis;dur={:.3}", ms(t));
        }
        if let Some(t) = db_time {
            let _ = write!(timing, ", db;dur={:.3}", ms(t));
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
