//! The response of a cacheable GET: the stored JSON bytes wrapped, without re-encoding, in
//! `{"source": ..., "elapsed_ms": ..., "data": <stored bytes>}`, with `X-Cache` and `Server-Timing` headers,
//! which the request's records read back ([`reported`]).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::cache::{Cached, Outcome, Reported, Via};
use crate::catalog::Target;
use crate::error::Result;
use crate::state::AppState;

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const X_CACHE_ERROR: HeaderName = HeaderName::from_static("x-cache-error");
const X_CACHE_LEVEL: HeaderName = HeaderName::from_static("x-cache-level");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The headers of a cached response that depend only on its [`Outcome`], one set per outcome, built once:
/// a copy of a built map costs a fraction of inserting its headers one by one (hashing each name), which
/// every cached response would otherwise do.
static HEADERS: LazyLock<[HeaderMap; Outcome::COUNT]> = LazyLock::new(|| Outcome::ALL.map(outcome_headers));

fn outcome_headers(outcome: Outcome) -> HeaderMap {
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
    // A placeholder for each response's own timings, so the copies have room for them.
    headers.insert(SERVER_TIMING, HeaderValue::from_static("total"));
    headers
}

pub struct CachedResponse {
    pub cached: Cached,
    pub started: Instant,
    /// Artificial database delay in force, reported when non-zero.
    pub db_delay: Duration,
}

impl CachedResponse {
    /// Fetches `target` through the cache or from PostgreSQL only, for a request that started at `started`.
    pub async fn fetch(state: &AppState, target: &Target, via: Via, started: Instant) -> Result<Self> {
        let cached = target.fetch(state, via).await?;
        Ok(CachedResponse { cached, started, db_delay: state.db.delay() })
    }
}

/// A short ASCII text built on the stack: the parts of a response that are formatted per request.
struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    fn new() -> Self {
        Text { buf: [0; N], len: 0 }
    }

    /// Appends as much of `bytes` as fits (every use is far below `N`).
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Milliseconds with three decimals from whole microseconds (`1234.567`): integer digits only, no
    /// `core::fmt`, since every cached response carries two or three of these.
    fn push_ms(&mut self, d: Duration) {
        let us = d.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(d.subsec_micros()));
        self.push(itoa::Buffer::new().format(us / 1000).as_bytes());
        let frac = us % 1000;
        self.push(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What a response told its client in `X-Cache`, for the request's metrics and the recent-requests list, which
/// repeat it; `None` for a response that is not a cached read. Read back from the header: handing the [`Outcome`]
/// on in the response's extensions would cost every response a map and a box, more than one header lookup.
pub fn reported(response: &Response) -> Option<Reported> {
    Reported::from_header(response.headers().get(X_CACHE)?.as_bytes())
}

impl IntoResponse for CachedResponse {
    fn into_response(self) -> Response {
        let Cached { data, outcome, redis_time, db_time } = self.cached;
        // Formatted once: the body and `Server-Timing` both give it.
        let mut elapsed = Text::<24>::new();
        elapsed.push_ms(self.started.elapsed());
        let mut head = Text::<128>::new();
        head.push(br#"{"source":""#);
        head.push(outcome.source().as_bytes());
        head.push(br#"","elapsed_ms":"#);
        head.push(elapsed.as_bytes());
        if !self.db_delay.is_zero() {
            head.push(br#","db_delay_ms":"#);
            head.push(itoa::Buffer::new().format(self.db_delay.as_millis()).as_bytes());
        }
        head.push(br#","data":"#);
        // Exactly the length of the body: a Vec whose length is its capacity becomes the body without another
        // allocation.
        let mut body = Vec::with_capacity(head.len + data.len() + 1);
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&data);
        body.push(b'}');

        let mut timing = Text::<128>::new();
        timing.push(b"total;dur=");
        timing.push(elapsed.as_bytes());
        if let Some(t) = redis_time {
            timing.push(b", redis;dur=");
            timing.push_ms(t);
        }
        if let Some(t) = db_time {
            timing.push(b", db;dur=");
            timing.push_ms(t);
        }
        let mut headers = HEADERS[outcome.index()].clone();
        // Replaces the template's placeholder, so the copy does not grow.
        match HeaderValue::from_bytes(timing.as_bytes()) {
            Ok(v) => headers.insert(SERVER_TIMING, v),
            Err(_) => headers.remove(SERVER_TIMING),
        };
        let mut response = Response::new(Body::from(body));
        *response.headers_mut() = headers;
        response
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::Level;

    fn ms(d: Duration) -> String {
        let mut out = Text::<32>::new();
        out.push_ms(d);
        String::from_utf8(out.as_bytes().to_vec()).expect("ASCII")
    }

    #[test]
    fn the_records_read_back_what_the_client_was_told() {
        for outcome in Outcome::ALL {
            let cached = Cached { data: Bytes::from_static(b"{}"), outcome, redis_time: None, db_time: None };
            let response = CachedResponse { cached, started: Instant::now(), db_delay: Duration::ZERO }.into_response();
            let back = reported(&response).expect("a cached read reports its outcome");
            assert_eq!((back.header, back.source), (outcome.header(), outcome.source()), "{outcome:?}");
            let h = response.headers();
            let text = |name: &str| h.get(name).map(|v| v.to_str().expect("ASCII").to_owned());
            assert_eq!(text("content-type").as_deref(), Some("application/json"));
            assert_eq!(text("cache-control").as_deref(), Some("no-store"));
            assert_eq!(text("x-cache-level").as_deref(), outcome.level().map(Level::label), "{outcome:?}");
            assert_eq!(text("x-cache-error").is_some(), outcome == Outcome::Error, "{outcome:?}");
            let timing = text("server-timing").expect("every cached response says its timings");
            assert!(timing.starts_with("total;dur=0.") && !timing.contains("redis"), "{timing}");
            assert_eq!(h.len(), 4 + usize::from(outcome.level().is_some()) + usize::from(outcome == Outcome::Error));
        }
        assert!(reported(&Response::new(Body::empty())).is_none());
        assert_eq!(Reported::from_header(b"hit"), None, "header values are exact");
    }

    #[tokio::test]
    async fn the_body_and_server_timing_give_the_same_elapsed_time() {
        let data = Bytes::from_static(br#"{"id":7}"#);
        let redis_time = Some(Duration::from_micros(58));
        let cached = Cached { data, outcome: Outcome::Hit(Level::L2), redis_time, db_time: None };
        let started = Instant::now() - Duration::from_micros(1_234);
        let response = CachedResponse { cached, started, db_delay: Duration::ZERO }.into_response();
        let timing = response.headers()[SERVER_TIMING].to_str().expect("ASCII").to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!((json["source"].as_str(), json["data"]["id"].as_i64()), (Some("cache"), Some(7)));
        let elapsed = json["elapsed_ms"].as_f64().expect("elapsed_ms");
        assert!(elapsed >= 1.234, "{elapsed}");
        assert_eq!(timing, format!("total;dur={elapsed:.3}, redis;dur=0.058"));
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
