//! The last requests the app served, for the dashboard's "Recent requests" table.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, Uri};
use serde::{Deserialize, Serialize};

pub const CAPACITY: usize = 20;
const MAX_PATH_CHARS: usize = 120;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentRequest {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// The replica that answered.
    pub replica: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `HIT`, `MISS` or `BYPASS`; absent for requests that do not use the cache.
    pub cache: Option<String>,
    pub ms: f64,
}

/// What the request's records keep per request: cheap clones, turned into text only when someone asks.
struct Entry {
    /// When the response was ready: a monotonic instant, read by the request's records anyway, turned into Unix
    /// time only for a snapshot (a wall-clock read per request would cost more than the rest of `push`).
    at: Instant,
    /// From a fixed set (`other` for any method the app does not know), so a made-up method stores nothing.
    method: &'static str,
    path: Path,
    status: u16,
    cache: Option<&'static str>,
    ms: f64,
}

/// The request's path and query: the `Uri` itself (a reference count) when short, else its first
/// [`MAX_PATH_CHARS`] characters, so a huge URL is not kept alive.
enum Path {
    Short(Uri),
    Truncated(String),
}

impl Path {
    fn new(uri: Uri) -> Self {
        let full = uri.path_and_query().map_or_else(|| uri.path(), |p| p.as_str());
        if full.len() <= MAX_PATH_CHARS { Path::Short(uri) } else { Path::Truncated(truncate(full)) }
    }

    fn text(&self) -> String {
        match self {
            Path::Short(uri) => truncate(uri.path_and_query().map_or_else(|| uri.path(), |p| p.as_str())),
            Path::Truncated(s) => s.clone(),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_PATH_CHARS).collect()
}

#[derive(Clone)]
pub struct Recent {
    inner: Arc<Mutex<VecDeque<Entry>>>,
    replica: Arc<str>,
}

impl Recent {
    /// The list of one replica, named `replica`.
    pub fn new(replica: &str) -> Self {
        Recent { inner: Arc::default(), replica: replica.into() }
    }

    /// Whether a request is worth listing: the API a person calls, not the dashboard's own polling,
    /// probes, metrics or static files.
    pub fn wants(method: &Method, path: &str) -> bool {
        let polled = matches!(path, "/api/stats" | "/api/recent" | "/api/ttl" | "/api/timeline")
            || (method == Method::GET && path.starts_with("/api/labs/"));
        path.starts_with("/api/") && !polled
    }

    /// Lists a request whose response was ready at `at`.
    pub fn push(&self, at: Instant, method: &'static str, uri: Uri, status: u16, cache: Option<&'static str>, ms: f64) {
        let entry = Entry { at, method, path: Path::new(uri), status, cache, ms };
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() == CAPACITY {
            list.pop_back();
        }
        list.push_front(entry);
    }

    /// Merges lists of several replicas: newest first, at most [`CAPACITY`].
    pub fn merge(lists: impl IntoIterator<Item = Vec<RecentRequest>>) -> Vec<RecentRequest> {
        let mut all: Vec<RecentRequest> = lists.into_iter().flatten().collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
        all.truncate(CAPACITY);
        all
    }

    /// Newest first.
    pub fn snapshot(&self) -> Vec<RecentRequest> {
        let (now, now_ms) = (Instant::now(), unix_ms(SystemTime::now()));
        let list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .map(|e| RecentRequest {
                at_ms: now_ms.saturating_sub(now.saturating_duration_since(e.at).as_millis() as u64),
                replica: self.replica.to_string(),
                method: e.method.to_owned(),
                path: e.path.text(),
                status: e.status,
                cache: e.cache.map(str::to_owned),
                ms: e.ms,
            })
            .collect()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_twenty_newest_first() {
        let r = Recent::new("a");
        for i in 0..25 {
            let uri: Uri = format!("/api/products/{i}").parse().expect("uri");
            r.push(Instant::now(), "GET", uri, 200, Some("HIT"), 0.1);
        }
        let s = r.snapshot();
        assert_eq!(s.len(), CAPACITY);
        assert_eq!(s[0].path, "/api/products/24");
        assert_eq!(s[CAPACITY - 1].path, "/api/products/5");
        assert_eq!(s[0].replica, "a");
    }

    #[test]
    fn times_are_unix_milliseconds_of_when_the_response_was_ready() {
        let r = Recent::new("a");
        let two_s_ago = Instant::now() - std::time::Duration::from_secs(2);
        r.push(two_s_ago, "GET", "/api/products/1".parse().expect("uri"), 200, Some("HIT"), 0.1);
        let expected = unix_ms(SystemTime::now()) - 2_000;
        let at_ms = r.snapshot()[0].at_ms;
        assert!(at_ms.abs_diff(expected) < 100, "{at_ms} against {expected}");
    }

    #[test]
    fn long_paths_are_stored_truncated() {
        let r = Recent::new("a");
        let uri: Uri = format!("/api/products?q={}", "x".repeat(10_000)).parse().expect("uri");
        r.push(Instant::now(), "GET", uri, 400, None, 0.1);
        let s = r.snapshot();
        assert_eq!(s[0].path.chars().count(), MAX_PATH_CHARS);
        let list = r.inner.lock().unwrap_or_else(|e| e.into_inner());
        assert!(matches!(list[0].path, Path::Truncated(ref p) if p.len() == MAX_PATH_CHARS));
    }

    #[test]
    fn lists_of_replicas_merge_newest_first() {
        let req = |replica: &str, at_ms| RecentRequest {
            at_ms,
            replica: replica.into(),
            method: "GET".into(),
            path: "/api/categories".into(),
            status: 200,
            cache: Some("HIT".into()),
            ms: 0.1,
        };
        let a: Vec<_> = (0..15).map(|i| req("a", i * 2)).rev().collect();
        let b: Vec<_> = (0..15).map(|i| req("b", i * 2 + 1)).rev().collect();
        let merged = Recent::merge([a, b]);
        assert_eq!(merged.len(), CAPACITY);
        assert_eq!((merged[0].at_ms, merged[0].replica.as_str()), (29, "b"));
        assert_eq!((merged[1].at_ms, merged[1].replica.as_str()), (28, "a"));
        assert!(merged.windows(2).all(|w| w[0].at_ms >= w[1].at_ms));
    }

    #[test]
    fn polling_and_probes_are_not_listed() {
        let get = &Method::GET;
        assert!(Recent::wants(get, "/api/products/1"));
        assert!(Recent::wants(get, "/api/compare"));
        assert!(Recent::wants(&Method::POST, "/api/labs/traffic"));
        for polled in ["/api/stats", "/api/recent", "/api/timeline", "/api/labs/traffic", "/api/labs/staleness"] {
            assert!(!Recent::wants(get, polled), "{polled}");
        }
        assert!(!Recent::wants(get, "/healthz"));
        assert!(!Recent::wants(get, "/assets/app.js"));
    }
}
