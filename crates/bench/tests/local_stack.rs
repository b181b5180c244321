//! The bench against the real app (in-process) on real PostgreSQL and Redis from `cache-demo-testkit`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cache_demo::{AppState, Config};
use cache_demo_bench::client::Target;
use cache_demo_bench::{Args, Plan, Runner};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The app on the shared servers with a fresh database and its own key prefix; stops when dropped.
struct App {
    addr: SocketAddr,
    /// The app's `CACHE_PREFIX` and Redis, for the reference server that reads its entries.
    prefix: String,
    redis_url: String,
    _stop: oneshot::Sender<()>,
}

async fn start_app() -> App {
    static N: AtomicU32 = AtomicU32::new(0);
    let pg = tokio::task::spawn_blocking(cache_demo_testkit::shared_pg).await.expect("start PostgreSQL");
    let redis = tokio::task::spawn_blocking(cache_demo_testkit::shared_redis).await.expect("start Redis");
    let db_url = tokio::task::spawn_blocking(move || cache_demo_testkit::fresh_database(pg))
        .await
        .expect("join")
        .expect("fresh database");
    let mut config = Config::for_urls(&db_url, &redis.url());
    config.cache_prefix = format!("bench{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let prefix = config.cache_prefix.clone();
    let state = AppState::new(config).expect("app state");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(cache_demo::serve(state, listener, async {
        let _ = rx.await;
    }));
    App { addr, prefix, redis_url: redis.url(), _stop: tx }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_prints_the_table_and_the_cache_beats_the_database() {
    let app = start_app().await;
    let url = format!("http://{}", app.addr);
    let args = Args::parse_from([
        "cache-demo-bench",
        "--url",
        &url,
        "--endpoint",
        "categories",
        "--concurrency",
        "4",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--no-progress",
    ]);
    let report = cache_demo_bench::run(&args).await.expect("bench run");

    let c = &report.endpoints[0];
    let (db, cache) = (c.database.as_ref().expect("database run"), c.cache.as_ref().expect("cached run"));
    assert_eq!((db.errors, cache.errors), (0, 0), "{:?} {:?}", db.first_error, cache.first_error);
    assert!(db.requests > 10 && cache.requests > 10, "{} and {} requests", db.requests, cache.requests);
    let (db_p50, cache_p50) = (db.latency.expect("db").p50_ms, cache.latency.expect("cache").p50_ms);
    assert!(cache_p50 < db_p50, "cached p50 {cache_p50} ms, database p50 {db_p50} ms");
    assert_eq!(db.x_cache.bypass, db.requests, "every cache=off response says BYPASS");
    assert!(cache.hit_ratio.expect("hit ratio from /api/stats") > 0.9, "{:?}", cache.hit_ratio);
    let (db_q, cache_q) = (db.db_queries_per_s.expect("db queries"), cache.db_queries_per_s.expect("db queries"));
    assert!(db_q > 10.0 && cache_q < db_q / 10.0, "DB queries/s: {db_q} without, {cache_q} with the cache");

    let md = report.to_markdown();
    let header = "| endpoint | path | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors | DB queries/s | hit ratio |";
    let lines: Vec<&str> = md.lines().collect();
    let at = lines.iter().position(|l| *l == header).unwrap_or_else(|| panic!("no endpoint table in\n{md}"));
    assert_eq!(lines[at + 1], "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    assert!(lines[at + 2].starts_with("| `GET /api/categories` | database (`cache=off`) | "), "{}", lines[at + 2]);
    assert!(lines[at + 3].starts_with("|  | cache | "), "{}", lines[at + 3]);
    for row in &lines[at + 2..=at + 3] {
        assert_eq!(row.matches(" | ").count() + 1, 10, "cells of {row}");
    }
    assert!(md.contains("| `GET /api/categories` | "), "speedup row missing:\n{md}");
    assert!(report.bar.is_empty(), "the bar belongs to the standard scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miss_path_sees_misses_then_hits() {
    let app = start_app().await;
    let mut plan = Plan::quick(2, Duration::from_secs(1));
    plan.keys = 40;
    let runner = Runner::new(Target::local(app.addr), plan);
    runner.app.wait_ready(Duration::from_secs(10)).await.expect("ready");
    let m = runner.miss_path().await.expect("miss path");
    assert_eq!((m.database.requests, m.miss.requests, m.hit.requests), (40, 40, 40));
    assert_eq!(m.database.x_cache.bypass, 40);
    assert_eq!(m.miss.x_cache.miss, 40, "after a flush every id misses once");
    assert_eq!(m.hit.x_cache.hit, 40, "then hits");
    assert_eq!(m.miss.hit_ratio, Some(0.0));
    assert_eq!(m.hit.hit_ratio, Some(1.0));
    assert!(m.round_trip_ms.is_some_and(|rt| rt > 0.0), "Redis time of the lookups: {:?}", m.round_trip_ms);
    assert!(m.extra_ms.is_some(), "server times of both paths");
    let (hit, db) = (m.hit.server.expect("hit").p50_ms, m.database.server.expect("db").p50_ms);
    assert!(hit < db + 1.0, "server p50: hit {hit} ms, database {db} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ceiling_and_the_hits_are_measured_in_turns() {
    let app = start_app().await;
    let runner = Runner::new(Target::local(app.addr), Plan::quick(4, Duration::from_millis(400)));
    runner.app.wait_ready(Duration::from_secs(10)).await.expect("ready");
    let before = runner.app.snapshot().await.expect("snapshot");
    let (ceiling, hits) = runner.ceiling_and_hits().await.expect("alternating run");
    let after = runner.app.snapshot().await.expect("snapshot");
    assert_eq!(ceiling.endpoint, cache_demo_bench::workload::Endpoint::Healthz);
    assert_eq!(hits.endpoint, cache_demo_bench::workload::Endpoint::Product);
    // Each run is the sum of its slices: three rounds of twice the plan's 0.4 s, 2.4 s in all, not one slice.
    for r in [&ceiling, &hits] {
        assert_eq!(r.slice_requests_per_s.len(), cache_demo_bench::scenario::CEILING_SLICES as usize);
        assert!(r.elapsed_s > 2.3 && r.elapsed_s < 4.0, "{} s", r.elapsed_s);
        assert!(r.requests > 20 && r.errors == 0, "{} requests, {:?}", r.requests, r.first_error);
    }
    // Before each round the cache was flushed and every product read again from PostgreSQL, three times over
    // (the warm-up before the first round adds its own reads; a flush resets `/api/stats`, not `/metrics`).
    let primed = f64::from(cache_demo_bench::calibrate::ROUNDS) * cache_demo_bench::workload::SEEDED_PRODUCTS as f64;
    let queries = after.db_queries.expect("queries") - before.db_queries.expect("queries");
    assert!(queries >= primed, "{queries} queries");
    assert_eq!(hits.x_cache.miss, 0, "every measured read finds a primed entry");
    assert_eq!(ceiling.x_cache.none, ceiling.requests, "/healthz has no X-Cache");
    assert_eq!(hits.x_cache.hit + hits.x_cache.miss, hits.requests);
    // The app's counters, summed over the slices, agree with what the responses said.
    let from_headers = hits.x_cache.hit as f64 / hits.requests as f64;
    let from_stats = hits.hit_ratio.expect("hit ratio from /api/stats");
    assert!((from_stats - from_headers).abs() < 0.01, "stats {from_stats}, headers {from_headers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_measured_at_fewer_connections_too() {
    let app = start_app().await;
    let runner = Runner::new(Target::local(app.addr), Plan::quick(12, Duration::from_millis(600)));
    runner.app.wait_ready(Duration::from_secs(10)).await.expect("ready");
    let runs = runner.hits_by_connections().await.expect("runs");
    // Of 4, 8 and 16 connections, those below the plan's 12.
    assert_eq!(runs.iter().map(|r| r.concurrency).collect::<Vec<_>>(), [4, 8]);
    for r in &runs {
        assert!(r.requests > 10 && r.errors == 0, "{} requests, {:?}", r.requests, r.first_error);
        assert!(r.server.is_some(), "Server-Timing of the hits");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_references_answer_the_bytes_the_app_stored() {
    use cache_demo_bench::reference::{Kind, router};
    use http::Method;

    let app = start_app().await;
    let target = Target::local(app.addr);
    let timeout = Duration::from_secs(10);
    let runner = Runner::new(target.clone(), Plan::quick(1, Duration::from_millis(100)));
    runner.app.wait_ready(timeout).await.expect("the app with Redis up");
    // A miss fills the entry; the next request must be a hit, so the entry is in Redis.
    target.request(Method::GET, "/api/products/7", None, timeout).await.expect("miss");
    let hit = target.request(Method::GET, "/api/products/7", None, timeout).await.expect("hit");
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let stored: serde_json::Value = serde_json::from_slice(&hit.body).expect("JSON");

    let (redis_url, key_prefix) = (app.redis_url.clone(), app.prefix.clone());
    let kinds = [
        Kind::Redis { redis_url: redis_url.clone(), key_prefix: key_prefix.clone() },
        Kind::Lookup { redis_url: redis_url.clone(), key_prefix },
    ];
    for kind in kinds {
        let reference = router(&kind).await.expect("the reference");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, reference).await });
        let reply =
            Target::local(addr).request(Method::GET, "/api/products/7", None, timeout).await.expect("reference");
        assert_eq!(reply.status, 200, "{kind:?}");
        let answered: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(answered, stored["data"], "{kind:?} answers the app's own entry, as stored");
        let missing =
            Target::local(addr).request(Method::GET, "/api/products/9999", None, timeout).await.expect("reply");
        assert_eq!(missing.status, 404, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calibrated_run_measures_the_app_and_its_three_references_in_turns() {
    use cache_demo_bench::calibrate::{References, calibrate};

    let app = start_app().await;
    let runner = Runner::new(Target::local(app.addr), Plan::quick(4, Duration::from_millis(400)));
    runner.app.wait_ready(Duration::from_secs(10)).await.expect("ready");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_cache-demo-ref"));
    let refs = References::start(binary, &app.prefix, Some(&app.redis_url), log.path()).await.expect("references");
    let before = runner.app.snapshot().await.expect("snapshot");
    let measured = calibrate(&runner, &refs).await;
    let after = runner.app.snapshot().await.expect("snapshot");
    refs.stop().await;
    let c = measured.expect("the calibrated run");
    // Before each round the cache was flushed and every product read again from PostgreSQL, and nothing else
    // missed (a flush resets `/api/stats`, not `/metrics`).
    let rounds = cache_demo_bench::calibrate::ROUNDS;
    let queries = after.db_queries.expect("queries") - before.db_queries.expect("queries");
    assert_eq!(queries, f64::from(rounds) * cache_demo_bench::workload::SEEDED_PRODUCTS as f64);
    assert_eq!(c.hits.x_cache.miss, 0);
    assert_eq!(c.rounds, rounds);
    for (name, r) in [
        ("app /healthz", &c.healthz),
        ("static", &c.static_ref),
        ("app hits", &c.hits),
        ("Redis reference", &c.redis_ref),
        ("lookup reference", &c.lookup_ref),
    ] {
        assert!(r.requests > 20 && r.errors == 0, "{name}: {} requests, {} errors", r.requests, r.errors);
        // Each run is the sum of its slices: three rounds of twice the plan's 0.4 s, 2.4 s in all, not one slice.
        assert_eq!(r.slice_requests_per_s.len(), cache_demo_bench::calibrate::CALIBRATION_SLICES as usize);
        assert!(r.elapsed_s > 2.3 && r.elapsed_s < 4.0, "{name}: {} s", r.elapsed_s);
    }
    assert_eq!(c.slices, cache_demo_bench::calibrate::CALIBRATION_SLICES);
    // The references run in processes of their own, so their CPU time is read; the app here is in-process.
    assert!(c.redis_ref.app_cpu_us_per_request.is_some_and(|us| us > 0.0));
    assert!(c.lookup_ref.app_cpu_us_per_request.is_some_and(|us| us > 0.0));
    assert!(c.hit_share().is_some() && c.lookup_share().is_some() && c.lookup_ref_share().is_some());
}
