//! The last requests the app served, for the dashboard's "Recent requests" table.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::Uri;
use serde::Serialize;

pub const CAPACITY: usize = 20;
const MAX_PATH_CHARS: usize = 120;

#[derive(Debug, Clone, Serialize)]
pub struct RecentRequest {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `HIT`, `MISS` or `BYPASS`; absent for requests that do not use the cache.
    pub cache: Option<&'static str>,
    pub ms: f64,
}

/// What the middleware keeps per request: cheap clones, turned into text only when someone asks.
struct Entry {
    at_ms: u64,
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

#[derive(Clone, Default)]
pub struct Recent {
    inner: Arc<Mutex<VecDeque<Entry>>>,
}

impl Recent {
    /// Whether a request is worth listing: the API a person calls, not the dashboard's own polling,
    /// probes, metrics or static files.
    pub fn wants(path: &str) -> bool {
        path.starts_with("/api/") && !matches!(path, "/api/stats" | "/api/recent" | "/api/ttl")
    }

    pub fn push(&self, method: &'static str, uri: Uri, status: u16, cache: Option<&'static str>, ms: f64) {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let entry = Entry { at_ms, method, path: Path::new(uri), status, cache, ms };
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() == CAPACITY {
            list.pop_back();
        }
        list.push_front(entry);
    }

    /// Newest first.
    pub fn snapshot(&self) -> Vec<RecentRequest> {
        let list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .map(|e| RecentRequest {
                at_ms: e.at_ms,
                method: e.method.to_owned(),
                path: e.path.text(),
                status: e.status,
                cache: e.cache,
                ms: e.ms,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_twenty_newest_first() {
        let r = Recent::default();
        for i in 0..25 {
            let uri: Uri = format!("/api/products/{i}").parse().expect("uri");
            r.push("GET", uri, 200, Some("HIT"), 0.1);
        }
        let s = r.snapshot();
        assert_eq!(s.len(), CAPACITY);
        assert_eq!(s[0].path, "/api/products/24");
        assert_eq!(s[CAPACITY - 1].path, "/api/products/5");
    }

    #[test]
    fn long_paths_are_stored_truncated() {
        let r = Recent::default();
        let uri: Uri = format!("/api/products?q={}", "x".repeat(10_000)).parse().expect("uri");
        r.push("GET", uri, 400, None, 0.1);
        let s = r.snapshot();
        assert_eq!(s[0].path.chars().count(), MAX_PATH_CHARS);
        let list = r.inner.lock().unwrap_or_else(|e| e.into_inner());
        assert!(matches!(list[0].path, Path::Truncated(ref p) if p.len() == MAX_PATH_CHARS));
    }

    #[test]
    fn polling_and_probes_are_not_listed() {
        assert!(Recent::wants("/api/products/1"));
        assert!(Recent::wants("/api/compare"));
        assert!(!Recent::wants("/api/stats"));
        assert!(!Recent::wants("/api/recent"));
        assert!(!Recent::wants("/healthz"));
        assert!(!Recent::wants("/assets/app.js"));
    }
}
