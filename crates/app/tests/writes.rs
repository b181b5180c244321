//! Writes whose client gives up or whose row is locked, and heavy work that must not starve the service.
//! A row lock is held from a second connection (psql) for a bounded time.

mod common;

use std::time::{Duration, Instant};

use cache_demo_testkit::{RedisOptions, RedisServer};
use common::{TestApp, assert_error, shared_pg};

/// Holds a row lock on product `id` from another connection for `secs`; returns once the lock is taken
/// (bounded), with the psql run to join.
async fn hold_row_lock(app: &TestApp, id: i32, secs: f64) -> tokio::task::JoinHandle<()> {
    let pg = shared_pg().await;
    let db = app.db_name.clone();
    let sql = format!(
        "BEGIN; SELECT id FROM products WHERE id = {id} FOR UPDATE; \
         SELECT pg_sleep({secs}); COMMIT;"
    );
    let held = tokio::task::spawn_blocking(move || {
        let _ = pg.psql(&db, &sql);
    });
    // Wait until PostgreSQL shows the lock (bounded).
    for _ in 0..100 {
        let waiting = tokio::task::block_in_place(|| {
            pg.psql(
                &app.db_name,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'products' AND l.mode = 'RowShareLock' AND l.granted",
            )
        })
        .unwrap_or_default();
        if waiting.trim() != "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_client_gave_up_is_still_invalidated() {
    let app = TestApp::start().await;
    let before = app.get("/api/products/1").await;
    assert_eq!(app.get("/api/products/1").await.x_cache(), "HIT");
    let old_stock = before.json["data"]["stock"].as_i64().expect("stock");
    let held = hold_row_lock(&app, 1, 1.0).await;
    // The client gives up while the UPDATE waits for the row lock; the statement commits once the lock goes.
    let gave_up = app
        .client
        .put(format!("{}/api/products/1", app.base))
        .header("content-type", "application/json")
        .body(format!(r#"{{"stock": {}}}"#, old_stock + 1000))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client was meant to time out");
    held.await.expect("psql");
    // Bounded wait for the committed value; a stale entry would be served until its TTL (60 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = old_stock;
    while Instant::now() < deadline {
        seen = app.get("/api/products/1").await.json["data"]["stock"].as_i64().unwrap_or(old_stock);
        if seen == old_stock + 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, old_stock + 1000, "the committed write stayed hidden behind a stale entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_a_lock_gives_up_at_lock_timeout() {
    let app = TestApp::start_with(|c| c.db_lock_timeout_ms = 300).await;
    let held = hold_row_lock(&app, 2, 3.0).await;
    let started = Instant::now();
    let r = app.put("/api/products/2", r#"{"stock": 1}"#).await;
    assert_error(&r, 503);
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    held.await.expect("psql");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_holds_while_every_connection_is_busy() {
    let app = TestApp::start_with(|c| {
        c.db_pool_size = 2;
        c.db_acquire_timeout_ms = 300;
    })
    .await;
    let held = hold_row_lock(&app, 3, 2.0).await;
    // Two writes wait for the row: both pooled connections are in use.
    let writes: Vec<_> = (0..2)
        .map(|i| {
            let (client, url) = (app.client.clone(), format!("{}/api/products/3", app.base));
            tokio::spawn(async move {
                client
                    .put(url)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"stock": {i}}}"#))
                    .send()
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    for w in writes {
        let _ = w.await;
    }
    held.await.expect("psql");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_load_test_is_refused_while_one_runs() {
    let app = TestApp::start_with(|c| c.db_delay_ms = 20).await;
    let first = {
        let (client, url) = (app.client.clone(), format!("{}/api/load-test", app.base));
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(r#"{"endpoint":"top","rounds":20}"#)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = app.post("/api/load-test", r#"{"endpoint":"top","rounds":2}"#).await;
    assert_error(&second, 429);
    assert_eq!(second.header("retry-after"), "1");
    assert_eq!(first.await.expect("join").expect("first load test"), 200);
    assert_eq!(app.post("/api/load-test", r#"{"endpoint":"top","rounds":2}"#).await.status, 200, "free again");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

async fn stock(app: &TestApp, id: i32) -> (i64, String) {
    let r = app.get(&format!("/api/products/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (r.json["data"]["stock"].as_i64().expect("stock"), r.x_cache().to_owned())
}

/// Reads product `id` for `period` and fails on any value other than `expected`; returns the last X-Cache.
async fn never_stale(app: &TestApp, id: i32, expected: i64, period: Duration) -> String {
    let until = Instant::now() + period;
    let mut last = String::new();
    while Instant::now() < until {
        let (seen, x_cache) = stock(app, id).await;
        assert_eq!(seen, expected, "a stale read after a committed write ({x_cache})");
        last = x_cache;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_an_open_breaker_is_invalidated_when_redis_returns() {
    let (app, redis) = TestApp::start_on_own_redis(RedisOptions::default(), |c| {
        c.redis_timeout_ms = 200;
        c.breaker_failures = 2;
        c.breaker_cooldown_ms = 800;
    })
    .await;
    let (old, _) = stock(&app, 4).await;
    assert_eq!(stock(&app, 4).await.1, "HIT");
    pause(&redis, true).await;
    for _ in 0..3 {
        stock(&app, 5).await;
    }
    pause(&redis, false).await;
    // The breaker is open: the write's invalidation is not even sent.
    let w = app.put("/api/products/4", &format!(r#"{{"stock": {}}}"#, old + 7)).await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(w.json["invalidated"]["complete"], false, "{}", w.text);
    // Across the cool-down and the breaker's probe: never the old value, and the cache is used again after.
    never_stale(&app, 4, old + 7, Duration::from_millis(2_500)).await;
    assert_eq!(stock(&app, 4).await, (old + 7, "HIT".to_owned()), "the owed invalidation was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_redis_is_frozen_is_never_read_stale() {
    let (app, redis) = TestApp::start_on_own_redis(RedisOptions::default(), |c| c.redis_timeout_ms = 200).await;
    let (old, _) = stock(&app, 6).await;
    assert_eq!(stock(&app, 6).await.1, "HIT");
    pause(&redis, true).await;
    let w = app.put("/api/products/6", &format!(r#"{{"stock": {}}}"#, old + 3)).await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(w.json["invalidated"]["complete"], false, "{}", w.text);
    pause(&redis, false).await;
    never_stale(&app, 6, old + 3, Duration::from_millis(1_500)).await;
    assert_eq!(stock(&app, 6).await, (old + 3, "HIT".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_redis_is_full_under_noeviction_is_never_read_stale() {
    let opts = RedisOptions { maxmemory: "8mb".into(), policy: "noeviction".into(), ..Default::default() };
    let (app, redis) = TestApp::start_on_own_redis(opts, |_| {}).await;
    let (old, _) = stock(&app, 7).await;
    assert_eq!(stock(&app, 7).await.1, "HIT");
    // One script writes past maxmemory (a script is checked only when it starts); after it, writes are refused.
    let fill = "for i = 1, 12000 do redis.call('SET', 'filler:' .. i, string.rep('x', 1000)) end return 1";
    let r = redis.clone();
    blocking(move || r.cli(&["EVAL", fill, "0"]).expect("fill")).await;
    let w = app.put("/api/products/7", &format!(r#"{{"stock": {}}}"#, old + 11)).await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(w.json["invalidated"]["complete"], false, "Redis refused the write: {}", w.text);
    never_stale(&app, 7, old + 11, Duration::from_millis(600)).await;
    let free = "for i = 1, 12000 do redis.call('UNLINK', 'filler:' .. i) end return 1";
    let r = redis.clone();
    blocking(move || r.cli(&["EVAL", free, "0"]).expect("free")).await;
    never_stale(&app, 7, old + 11, Duration::from_millis(800)).await;
    assert_eq!(stock(&app, 7).await, (old + 11, "HIT".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_owed_past_the_bound_remove_everything_and_are_never_read_stale() {
    let (app, redis) = TestApp::start_on_own_redis(RedisOptions::default(), |c| {
        c.redis_timeout_ms = 200;
        c.invalidation_max_owed = 2;
    })
    .await;
    let (old8, _) = stock(&app, 8).await;
    let (old9, _) = stock(&app, 9).await;
    stock(&app, 10).await;
    for id in [8, 9, 10] {
        assert_eq!(stock(&app, id).await.1, "HIT");
    }
    // Shared state of the replicas, not a cached value: it must outlive the removal.
    let lab = app.key("lab:db-delay-ms");
    let r = redis.clone();
    let l = lab.clone();
    blocking(move || r.cli(&["SET", &l, "0"]).expect("SET")).await;
    pause(&redis, true).await;
    // Two writes owe three scopes (product:8, product:9, catalog), more than the bound: everything is owed.
    for (id, stock) in [(8, old8 + 5), (9, old9 + 5)] {
        let w = app.put(&format!("/api/products/{id}"), &format!(r#"{{"stock": {stock}}}"#)).await;
        assert_eq!(w.status, 200, "{}", w.text);
        assert_eq!(w.json["invalidated"]["complete"], false, "{}", w.text);
    }
    pause(&redis, false).await;
    never_stale(&app, 8, old8 + 5, Duration::from_millis(1_000)).await;
    never_stale(&app, 9, old9 + 5, Duration::from_millis(200)).await;
    assert_eq!(stock(&app, 8).await, (old8 + 5, "HIT".to_owned()), "the cache is used again");
    // Product 10 was not written, and its entry went all the same: everything was removed, once.
    assert_eq!(stock(&app, 10).await.1, "MISS", "product 10's entry was removed with everything else");
    assert_eq!(stock(&app, 10).await.1, "HIT");
    let r = redis.clone();
    assert_eq!(blocking(move || r.cli(&["GET", &lab]).expect("GET")).await, "0", "shared state stays");
}

/// SIGSTOP (`true`) or SIGCONT the server: Redis frozen, not gone.
async fn pause(redis: &std::sync::Arc<RedisServer>, stop: bool) {
    let redis = redis.clone();
    blocking(move || if stop { redis.pause() } else { redis.resume() }).await.expect("signal redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_seen_by_a_read_that_starts_after_it_even_while_a_load_of_that_id_is_running() {
    let app = std::sync::Arc::new(TestApp::start().await);
    let first =
        app.post("/api/products", r#"{"sku": "RACE-1", "name": "First", "price": 1.0, "category_id": 1}"#).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let next = first.json["product"]["id"].as_i64().expect("id") + 1;
    // A read of the next id finds nothing, and its result arrives late (the delay comes after the query).
    assert_eq!(app.put("/api/labs/db-delay", r#"{"ms": 600}"#).await.status, 200);
    let early = tokio::spawn({
        let app = app.clone();
        async move { app.get(&format!("/api/products/{next}")).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(app.put("/api/labs/db-delay", r#"{"ms": 0}"#).await.status, 200);
    let created =
        app.post("/api/products", r#"{"sku": "RACE-2", "name": "Second", "price": 2.0, "category_id": 1}"#).await;
    assert_eq!(
        (created.status.as_u16(), created.json["product"]["id"].as_i64()),
        (201, Some(next)),
        "{}",
        created.text
    );
    assert!(!early.is_finished(), "the early read is still loading");
    // Started after the create was acknowledged: it must not share the early read's "not found".
    let late = app.get(&format!("/api/products/{next}")).await;
    assert_eq!(late.status, 200, "{}", late.text);
    assert_eq!(early.await.expect("early read").status, 404);
}
