//! Failures of Redis and PostgreSQL, with real processes: the app keeps answering what it can.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cache_demo_testkit::{PgServer, RedisOptions, RedisServer, init_sql_path};
use common::{TestApp, assert_error, eventually_hit, fresh_db, shared_pg, shared_redis};

/// Blocking harness calls run on the test's own thread, which owns the servers it starts.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_no_request() {
    let mut redis = blocking(|| RedisServer::start(RedisOptions::default())).expect("redis");
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let app = Arc::new(
        TestApp::start_on(&db_url, &redis.url(), |c| {
            c.redis_timeout_ms = 200;
            c.breaker_cooldown_ms = 500;
        })
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, degraded) =
        (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let paths = ["/api/products/1", "/api/categories", "/api/products?q=yoga", "/api/top-products", "/api/products/7"];
    let mut load = Vec::new();
    for worker in 0..4 {
        let (app, stop, ok, failed, degraded) =
            (app.clone(), stop.clone(), ok.clone(), failed.clone(), degraded.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0usize;
            // Bounded: stops when told to or after 5,000 requests.
            while !stop.load(Ordering::SeqCst) && n < 5_000 {
                let r = app.get(paths[(worker + n) % paths.len()]).await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if !r.header("x-cache-error").is_empty() {
                    degraded.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    blocking(|| redis.kill()).expect("kill redis");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    blocking(|| redis.restart()).expect("restart redis");
    let back = Instant::now();
    let recovered = eventually_hit(&app, "/api/products/1").await;
    let recovery = back.elapsed();
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.expect("load task");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed while Redis was down");
    assert!(ok.load(Ordering::Relaxed) > 100, "the load ran");
    assert!(degraded.load(Ordering::Relaxed) > 0, "some requests were answered without Redis");
    assert!(recovered, "the cache serves hits again after Redis comes back");
    assert!(recovery < Duration::from_secs(5), "back to cache hits {recovery:?} after Redis returned");
    let metrics = app.get("/metrics").await.text;
    for to in ["open", "half-open", "closed"] {
        let series = format!(r#"redis_circuit_transitions_total{{to="{to}"}}"#);
        assert!(metrics.lines().any(|l| l.starts_with(&series)), "breaker went {to}:\n{metrics}");
    }
    assert!(metrics.contains("redis_circuit_state 0"), "closed again");
    assert!(
        metrics.lines().any(|l| l.starts_with("cache_requests_total{") && l.contains(r#"result="error""#)),
        "{metrics}"
    );
    assert!(metrics.contains("redis_up 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_delays_requests_only_by_the_timeout() {
    let redis = blocking(|| RedisServer::start(RedisOptions::default())).expect("redis");
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let app = TestApp::start_on(&db_url, &redis.url(), |c| c.redis_timeout_ms = 200).await;
    app.get("/api/products/1").await;
    blocking(|| redis.pause()).expect("SIGSTOP redis");
    for path in ["/api/products/1", "/api/categories"] {
        let started = Instant::now();
        let r = app.get(path).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.json["source"], "database");
        assert_eq!(r.header("x-cache-error"), "redis unavailable");
        // Lookup timeout + database time; a hang would take the client's 30 s.
        assert!(took < Duration::from_secs(5), "{path} took {took:?} with Redis hung");
    }
    blocking(|| redis.resume()).expect("SIGCONT redis");
    assert!(eventually_hit(&app, "/api/products/1").await, "hits again after Redis resumes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_serves_hits_and_503s_misses_then_recovers() {
    let mut pg = blocking(PgServer::start).expect("postgres");
    blocking(|| pg.create_database_from_file("catalog", &init_sql_path())).expect("load init.sql");
    let redis = shared_redis().await;
    let app = TestApp::start_on(&pg.url("catalog"), &redis.url(), |c| c.db_acquire_timeout_ms = 500).await;
    assert_eq!(app.get("/api/products/1").await.x_cache(), "MISS");
    assert_eq!(app.get("/api/categories").await.x_cache(), "MISS");

    blocking(|| pg.stop()).expect("stop postgres");
    let hit = app.get("/api/products/1").await;
    assert_eq!((hit.status.as_u16(), hit.x_cache()), (200, "HIT"), "{}", hit.text);
    assert_eq!(app.get("/api/categories").await.x_cache(), "HIT");
    assert_error(&app.get("/api/products/2").await, 503);
    assert_error(&app.get("/api/products?q=tent").await, 503);
    assert_error(&app.put("/api/products/1", r#"{"stock": 1}"#).await, 503);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.json["postgres"]["up"], false);
    assert_eq!(app.get("/healthz").await.status, 200, "alive while PostgreSQL is down");

    blocking(|| pg.restart()).expect("restart postgres");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 0;
    while Instant::now() < deadline {
        status = app.get("/api/products/2").await.status.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the pool reconnects without restarting the app");
    assert_eq!(app.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn starts_and_serves_without_redis() {
    let (db_url, _) = fresh_db(shared_pg().await).await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let app = TestApp::start_on(&db_url, &format!("redis://127.0.0.1:{port}/"), |c| c.redis_timeout_ms = 200).await;
    for _ in 0..2 {
        let r = app.get("/api/products/1").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!((r.x_cache(), r.header("x-cache-error")), ("MISS", "redis unavailable"));
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "Redis does not decide readiness: {}", ready.text);
    assert_eq!(ready.json["redis"]["up"], false);
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json["redis"]["available"], false);
    assert_eq!(stats.json["errors"], 2);
    assert!(stats.json["keys"].is_null());
    assert_error(&app.post("/api/flush-cache", "").await, 503);
    // Writes succeed; their invalidation is reported incomplete.
    let w = app.put("/api/products/1", r#"{"stock": 5}"#).await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(w.json["invalidated"]["complete"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_through_a_tls_redis() {
    let redis = blocking(|| RedisServer::start(RedisOptions { tls: true, ..Default::default() })).expect("TLS redis");
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let app = TestApp::start_on(&db_url, &redis.url(), |_| {}).await;
    assert!(redis.url().starts_with("rediss://"));
    assert_eq!(app.get("/api/products/1").await.x_cache(), "MISS");
    assert_eq!(app.get("/api/products/1").await.x_cache(), "HIT");
    let ttl = blocking(|| redis.cli(&["TTL", &app.key("product:1")])).expect("TTL over TLS");
    assert!(ttl.parse::<i64>().is_ok_and(|t| t > 0), "TTL {ttl}");
}
