//! Test support: the app served in-process on a random loopback port, backed by real PostgreSQL and Redis
//! from `cache-demo-testkit`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use cache_demo::{AppState, Config};
use cache_demo_testkit::{PgServer, RedisServer};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub prefix: String,
    pub db_name: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn x_cache(&self) -> &str {
        self.header("x-cache")
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique key prefix per app, so tests sharing one Redis never see each other's keys.
pub fn unique_prefix() -> String {
    format!("t{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub async fn shared_pg() -> &'static PgServer {
    tokio::task::spawn_blocking(cache_demo_testkit::shared_pg).await.expect("start shared PostgreSQL")
}

pub async fn shared_redis() -> &'static RedisServer {
    tokio::task::spawn_blocking(cache_demo_testkit::shared_redis).await.expect("start shared Redis")
}

/// Lua that counts the keys matching `ARGV[1]` (`KEYS` is fine on a test's Redis), and one that also deletes them.
pub const COUNT_KEYS: &str = "return #redis.call('KEYS', ARGV[1])";
pub const DELETE_KEYS: &str =
    "local ks = redis.call('KEYS', ARGV[1]) for _, k in ipairs(ks) do redis.call('DEL', k) end return #ks";

/// How many keys match `pattern`.
pub fn count_keys(redis: &RedisServer, pattern: &str) -> u64 {
    redis.cli(&["EVAL", COUNT_KEYS, "0", pattern]).expect("EVAL").parse().expect("a count")
}

/// A fresh database loaded with init.sql on `pg`; returns (url, name).
pub async fn fresh_db(pg: &'static PgServer) -> (String, String) {
    let url = tokio::task::spawn_blocking(move || cache_demo_testkit::fresh_database(pg))
        .await
        .expect("join")
        .expect("create a fresh database");
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    (url, name)
}

pub fn psql(pg: &PgServer, db: &str, sql: &str) -> String {
    pg.psql(db, sql).expect("psql").trim().to_owned()
}

impl TestApp {
    /// The app on the shared servers, with a fresh database and its own key prefix.
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let pg = shared_pg().await;
        let redis = shared_redis().await;
        let (db_url, _) = fresh_db(pg).await;
        Self::start_on(&db_url, &redis.url(), tweak).await
    }

    pub async fn start_on(db_url: &str, redis_url: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::for_urls(db_url, redis_url);
        config.cache_prefix = unique_prefix();
        config.listen_addr = "127.0.0.1:0".parse().expect("addr");
        tweak(&mut config);
        let prefix = config.cache_prefix.clone();
        let db_name = db_url.rsplit('/').next().unwrap_or_default().to_owned();
        let state = AppState::new(config).expect("app state");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(cache_demo::serve(state.clone(), listener, async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("http client");
        let app = TestApp { base, client, state, prefix, db_name, shutdown: Some(tx), server: Some(server) };
        app.wait_for_redis().await;
        app
    }

    /// The app on a Redis of its own (to stop, pause or fill) and a fresh database on the shared PostgreSQL.
    pub async fn start_on_own_redis(
        opts: cache_demo_testkit::RedisOptions,
        tweak: impl FnOnce(&mut Config),
    ) -> (TestApp, std::sync::Arc<RedisServer>) {
        let redis = tokio::task::spawn_blocking(move || RedisServer::start(opts))
            .await
            .expect("join")
            .expect("start a Redis server");
        let (db_url, _) = fresh_db(shared_pg().await).await;
        let app = Self::start_on(&db_url, &redis.url(), tweak).await;
        (app, std::sync::Arc::new(redis))
    }

    /// The Redis connection is made in the background; wait (bounded) so the first request is a real miss.
    async fn wait_for_redis(&self) {
        for _ in 0..100 {
            if self.state.redis_reachable().await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until this app hears cross-instance invalidations (its L1 is only used then).
    pub async fn wait_subscribed(&self) {
        for _ in 0..200 {
            if self.state.invalidation_subscribed() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the app did not subscribe to invalidations");
    }

    /// The value of one sample line of /metrics, e.g. `db_query_duration_seconds_count{query="product"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}:{}", self.prefix, name)
    }

    pub async fn get(&self, path: &str) -> Resp {
        let r = self.client.get(format!("{}{}", self.base, path)).send().await.expect("GET");
        to_resp(r).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        to_resp(req.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &str) -> Resp {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, text, json }
}

/// Polls `path` (for at most 10 s) until it is answered from the cache.
pub async fn eventually_hit(app: &TestApp, path: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if app.get(path).await.x_cache() == "HIT" {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Asserts the response is a JSON error with the given status and returns its body.
#[track_caller]
pub fn assert_error(r: &Resp, status: u16) -> &Value {
    assert_eq!(r.status.as_u16(), status, "status of {}", r.text);
    assert!(r.json.get("error").and_then(Value::as_str).is_some_and(|s| !s.is_empty()), "error body: {}", r.text);
    assert!(r.json.get("detail").is_some(), "detail present: {}", r.text);
    &r.json
}
