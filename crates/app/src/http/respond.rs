//! The response of a cacheable GET: the stored JSON bytes wrapped, without re-encoding, in
//! `{"source": ..., "elapsed_ms": ..., "data": <stored bytes>}`, with `X-Cache` and `Server-Timing` headers.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::cache::{Cached, Level, Outcome};

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

/// The outcome a cached response reports in its headers (read back by the metrics middleware, which sees only
/// the response); `None` for any other response.
pub fn outcome_of(headers: &HeaderMap) -> Option<Outcome> {
    match headers.get(X_CACHE)?.as_bytes() {
        b"HIT" => {
            Some(Outcome::Hit(if headers.get(X_CACHE_LEVEL)?.as_bytes() == b"L1" { Level::L1 } else { Level::L2 }))
        }
        b"BYPASS" => Some(Outcome::Bypass),
        b"MISS" if headers.contains_key(X_CACHE_ERROR) => Some(Outcome::Error),
        b"MISS" => Some(Outcome::Miss),
        _ => None,
    }
}

/// Appends milliseconds with three decimals from whole microseconds (`1234.567`): integer digits only, no
/// `core::fmt`, since every cached response carries two or three of these.
fn push_ms(out: &mut Vec<u8>, d: Duration) {
    let us = d.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(d.subsec_micros()));
    out.extend_from_slice(itoa::Buffer::new().format(us / 1000).as_bytes());
    let frac = us % 1000;
    out.extend_from_slice(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
}

impl IntoResponse for CachedResponse {
    fn into_response(self) -> Response {
        let Cached { data, outcome, redis_time, db_time } = self.cached;
        let elapsed = self.started.elapsed();
        let mut body = Vec::with_capacity(data.len() + 96);
        body.extend_from_slice(br#"{"source":""#);
        body.extend_from_slice(outcome.source().as_bytes());
        body.extend_from_slice(br#"","elapsed_ms":"#);
        push_ms(&mut body, elapsed);
        if !self.db_delay.is_zero() {
            body.extend_from_slice(br#","db_delay_ms":"#);
            body.extend_from_slice(itoa::Buffer::new().format(self.db_delay.as_millis()).as_bytes());
        }
        body.extend_from_slice(br#","data":"#);
        body.extend_from_slice(&data);
        body.push(b'}');

        let mut timing = Vec::with_capacity(64);
        timing.extend_from_slice(b"total;dur=");
        push_ms(&mut timing, elapsed);
        if let Some(t) = redis_time {
            timing.extend_from_slice(b", redis;dur=");
            push_ms(&mut timing, t);
        }
        if let Some(t) = db_time {
            timing.extend_from_slice(b", db;dur=");
            push_ms(&mut timing, t);
        }
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_CACHE, HeaderValue::from_static(outcome.header()));
        if let Some(level) = outcome.level() {
            headers.insert(X_CACHE_LEVEL, HeaderValue::from_static(level.label()));
        }
        if outcome == Outcome::Error {
            headers.insert(X_CACHE_ERROR, HeaderValue::from_static("redis unavailable"));
        }
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(timing)) {
            headers.insert(SERVER_TIMING, v);
        }
        let mut response = Response::new(Body::from(body));
        *response.headers_mut() = headers;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> String {
        let mut out = Vec::new();
        push_ms(&mut out, d);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn the_outcome_is_read_back_from_the_headers() {
        for outcome in Outcome::ALL {
            let cached = Cached { data: Bytes::from_static(b"{}"), outcome, redis_time: None, db_time: None };
            let response = CachedResponse { cached, started: Instant::now(), db_delay: Duration::ZERO }.into_response();
            assert_eq!(outcome_of(response.headers()), Some(outcome));
        }
        assert_eq!(outcome_of(&HeaderMap::new()), None);
    }

    #[test]
    fn milliseconds_have_three_decimals() {
        assert_eq!(ms(Duration::from_micros(1_234_567)), "1234.567");
        assert_eq!(ms(Duration::from_micros(58)), "0.058");
        assert_eq!(ms(Duration::from_micros(10_200)), "10.200");
        assert_eq!(ms(Duration::from_nanos(400)), "0.000");
        assert_eq!(ms(Duration::from_secs(90)), "90000.000");
    }
}
