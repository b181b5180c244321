//! The caching patterns against real PostgreSQL and Redis: stampede protection, L1 with cross-instance
//! invalidation, write-through, warming, admin routes, the breaker, and eviction at maxmemory.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_demo_testkit::{RedisOptions, RedisServer};
use common::{TestApp, assert_error, fresh_db, shared_pg, shared_redis};
use futures::future::join_all;

const CATEGORY_QUERIES: &str = r#"db_query_duration_seconds_count{query="category_stats"}"#;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn burst(apps: &[&TestApp], path: &str, n: usize) -> Vec<common::Resp> {
    join_all((0..n).map(|i| apps[i % apps.len()].get(path))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_a_cold_key_makes_one_database_query() {
    // The delay keeps the first load in flight while the other 199 requests arrive.
    let app = TestApp::start_with(|c| c.db_delay_ms = 200).await;
    let responses = burst(&[&app], "/api/categories", 200).await;
    assert!(responses.iter().all(|r| r.status == 200), "every request answered");
    let first = &responses[0].json["data"];
    assert!(responses.iter().all(|r| r.json["data"] == *first), "every request got the same data");
    assert_eq!(app.metric(CATEGORY_QUERIES).await, 1.0, "exactly one database query");
    let coalesced = app.metric(r#"cache_coalesced_requests_total{endpoint="categories"}"#).await;
    let hits = app.get("/api/stats").await.json["hits"].as_f64().unwrap_or_default();
    assert_eq!(coalesced + hits, 199.0, "the other 199 shared the first load or hit the value it stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_single_flight_the_stampede_reaches_the_database() {
    let app = TestApp::start_with(|c| {
        c.db_delay_ms = 200;
        c.single_flight = false;
    })
    .await;
    let responses = burst(&[&app], "/api/categories", 50).await;
    assert!(responses.iter().all(|r| r.status == 200));
    assert!(app.metric(CATEGORY_QUERIES).await > 1.0, "the pattern is what makes it one query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stampede_lock_makes_one_query_across_replicas() {
    let redis = shared_redis().await;
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let prefix = common::unique_prefix();
    let tweak = |c: &mut cache_demo::Config| {
        c.cache_prefix = prefix.clone();
        c.db_delay_ms = 300;
        c.stampede_lock = true;
    };
    let a = TestApp::start_on(&db_url, &redis.url(), tweak).await;
    let b = TestApp::start_on(&db_url, &redis.url(), tweak).await;
    let responses = burst(&[&a, &b], "/api/top-products", 60).await;
    assert!(responses.iter().all(|r| r.status == 200));
    let queries = a.metric(r#"db_query_duration_seconds_count{query="top_products"}"#).await
        + b.metric(r#"db_query_duration_seconds_count{query="top_products"}"#).await;
    assert_eq!(queries, 1.0, "one query for both replicas");
    let waited = a.metric(r#"cache_stampede_lock_total{result="waited"}"#).await
        + b.metric(r#"cache_stampede_lock_total{result="waited"}"#).await;
    assert!(waited >= 1.0, "the other replica waited for the lock holder's value");
    assert_eq!(
        redis.cli(&["EXISTS", &format!("{prefix}:lock:products:top:10")]).expect("exists"),
        "0",
        "lock released"
    );
}

async fn two_l1_replicas(db_url: &str, redis_url: &str) -> (TestApp, TestApp) {
    let prefix = common::unique_prefix();
    let tweak = |c: &mut cache_demo::Config| {
        c.cache_prefix = prefix.clone();
        c.l1_enabled = true;
        c.l1_ttl_ms = 60_000;
    };
    let a = TestApp::start_on(db_url, redis_url, tweak).await;
    let b = TestApp::start_on(db_url, redis_url, tweak).await;
    a.wait_subscribed().await;
    b.wait_subscribed().await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_serves_repeat_reads_and_a_write_elsewhere_clears_it() {
    let redis = shared_redis().await;
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let (a, b) = two_l1_replicas(&db_url, &redis.url()).await;
    assert_eq!(a.get("/api/products/1").await.x_cache(), "MISS");
    let from_redis = a.get("/api/products/1").await;
    assert_eq!((from_redis.x_cache(), from_redis.header("x-cache-level")), ("HIT", "L2"), "then Redis, which fills L1");
    let hit = a.get("/api/products/1").await;
    assert_eq!((hit.x_cache(), hit.header("x-cache-level")), ("HIT", "L1"));
    assert!(!hit.header("server-timing").contains("redis;"), "an L1 hit does not touch Redis");
    let other = b.get("/api/products/1").await;
    assert_eq!((other.x_cache(), other.header("x-cache-level")), ("HIT", "L2"), "B's first read comes from Redis");

    let w = b.put("/api/products/1", r#"{"stock": 4242}"#).await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(w.json["invalidated"]["replicas"]["replicas"], 2, "{}", w.text);
    assert_eq!(
        w.json["invalidated"]["replicas"]["acknowledged"], 2,
        "both replicas confirmed before the write returned"
    );
    let after = a.get("/api/products/1").await;
    assert_eq!(after.json["data"]["stock"], 4242, "A's L1 no longer has the old product ({})", after.x_cache());
    assert_ne!(after.header("x-cache-level"), "L1");
    let stats = a.get("/api/stats").await;
    assert_eq!(stats.json["l1"]["active"], true);
    assert!(a.metric(r#"cache_invalidation_messages_total{direction="received"}"#).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_is_off_while_invalidations_cannot_be_heard_and_resubscribes() {
    let mut redis = blocking(|| RedisServer::start(RedisOptions::default())).expect("redis");
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let app = TestApp::start_on(&db_url, &redis.url(), |c| {
        c.l1_enabled = true;
        c.redis_timeout_ms = 200;
        c.breaker_cooldown_ms = 300;
    })
    .await;
    app.wait_subscribed().await;
    app.get("/api/products/1").await;
    app.get("/api/products/1").await;
    assert_eq!(app.get("/api/products/1").await.header("x-cache-level"), "L1");
    blocking(|| redis.kill()).expect("kill");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.invalidation_subscribed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = app.get("/api/products/1").await;
    assert_eq!(r.status, 200);
    assert_ne!(r.header("x-cache-level"), "L1", "no L1 answers while this replica could miss invalidations");
    assert_eq!(app.get("/api/stats").await.json["l1"]["active"], false);
    blocking(|| redis.restart()).expect("restart");
    app.wait_subscribed().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut level = String::new();
    while Instant::now() < deadline && level != "L1" {
        level = app.get("/api/products/1").await.header("x-cache-level").to_owned();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(level, "L1", "L1 serves again after resubscribing");
}

#[tokio::test]
async fn write_through_stores_the_new_value() {
    let app = TestApp::start_with(|c| c.write_through = true).await;
    app.get("/api/products/5").await;
    let w = app.put("/api/products/5", r#"{"price": 12.34}"#).await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(w.json["write_through"], "stored");
    let r = app.get("/api/products/5").await;
    assert_eq!(r.x_cache(), "HIT", "the write put the new value in the cache");
    assert_eq!(r.json["data"]["price"], 12.34);
    let created = app
        .post("/api/products", r#"{"sku":"WT-1","name":"Write-through Kettle","price":20,"stock":1,"category_id":3}"#)
        .await;
    assert_eq!(created.json["write_through"], "stored", "{}", created.text);
    let id = created.json["product"]["id"].as_i64().expect("id");
    assert_eq!(app.get(&format!("/api/products/{id}")).await.x_cache(), "HIT");
    assert_eq!(app.metric(r#"cache_write_through_total{result="stored"}"#).await, 2.0);
}

#[tokio::test]
async fn warming_loads_stats_top_products_and_their_pages() {
    let app = TestApp::start_with(|c| c.warm_top_n = 5).await;
    let r = app.post("/api/warm", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["stored"], 7, "top list, category stats and 5 products: {}", r.text);
    assert_eq!(app.get("/api/categories").await.x_cache(), "HIT");
    assert_eq!(app.get("/api/top-products?limit=5").await.x_cache(), "HIT");
    let first = r.json["keys"]
        .as_array()
        .and_then(|k| k.iter().find_map(|k| k["key"].as_str().filter(|s| s.starts_with("product:"))));
    let id = first.and_then(|k| k.strip_prefix("product:")).expect("a product key");
    assert_eq!(app.get(&format!("/api/products/{id}")).await.x_cache(), "HIT");
    let again = app.post("/api/warm", "").await;
    assert_eq!((again.json["stored"].as_u64(), again.json["already_cached"].as_u64()), (Some(0), Some(7)));
    assert_eq!(app.metric("cache_warmed_keys_total").await, 7.0);
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.json["hits"], 3, "warming itself is not counted as requests");
}

#[tokio::test]
async fn warming_at_start_up_fills_the_cache_before_any_request() {
    let app = TestApp::start_with(|c| {
        c.warm_on_start = true;
        c.warm_top_n = 3;
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut keys = 0;
    while Instant::now() < deadline && keys < 5 {
        keys = app.get("/api/stats").await.json["keys"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keys, 5, "top list, category stats and 3 products");
    assert_eq!(app.get("/api/categories").await.x_cache(), "HIT");
}

#[tokio::test]
async fn admin_lists_and_deletes_only_inside_the_prefix() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    let foreign = format!("other-{}:product:1", app.prefix);
    redis.cli(&["SET", &foreign, "keep"]).expect("set");
    for id in 1..=3 {
        app.get(&format!("/api/products/{id}")).await;
    }
    app.get("/api/categories").await;
    let list = app.get("/admin/cache/keys?pattern=product:*").await;
    assert_eq!(list.status, 200, "{}", list.text);
    let keys: Vec<&str> =
        list.json["keys"].as_array().expect("keys").iter().filter_map(|k| k["key"].as_str()).collect();
    assert_eq!(keys, [app.key("product:1"), app.key("product:2"), app.key("product:3")]);
    assert!(list.json["keys"][0]["ttl_secs"].as_i64().is_some_and(|t| t > 0));
    let limited = app.get("/admin/cache/keys?pattern=*&limit=2").await;
    assert_eq!((limited.json["count"].as_u64(), limited.json["truncated"].as_bool()), (Some(2), Some(true)));

    let deleted = app.delete("/admin/cache/keys?pattern=product:*").await;
    assert_eq!(deleted.json["deleted"], 3, "{}", deleted.text);
    assert_eq!(app.get("/api/categories").await.x_cache(), "HIT", "other keys stay");
    let everything = app.delete("/admin/cache/keys?pattern=*").await;
    assert!(everything.json["deleted"].as_u64() >= Some(2));
    assert_eq!(redis.cli(&["GET", &foreign]).expect("get"), "keep", "nothing outside the prefix is touched");

    for path in [
        "/admin/cache/keys?limit=0",
        "/admin/cache/keys?limit=1001",
        "/admin/cache/keys?limit=lots",
        "/admin/cache/keys?pattern=a%20b",
        "/admin/cache/keys?pattern=",
        "/admin/cache/keys?colour=red",
    ] {
        assert_error(&app.get(path).await, 400);
    }
    assert_error(&app.delete("/admin/cache/keys").await, 400);
    assert_error(&app.delete("/admin/cache/keys?pattern=*&limit=5").await, 400);
}

#[tokio::test]
async fn admin_token_protects_admin_routes_and_flush() {
    let token = "t0ken-for-admin-test";
    let app = TestApp::start_with(|c| c.admin_token = Some(token.into())).await;
    app.get("/api/products/1").await;
    let no_token = app.delete("/admin/cache/keys?pattern=*").await;
    assert_error(&no_token, 401);
    assert_eq!(no_token.header("www-authenticate"), "Bearer");
    assert_error(&app.get("/admin/cache/keys").await, 401);
    assert_error(&app.post("/api/flush-cache", "").await, 401);
    let wrong =
        app.client.post(format!("{}/api/flush-cache", app.base)).bearer_auth("wrong").send().await.expect("request");
    assert_eq!(wrong.status(), 401);
    assert_eq!(app.get("/api/products/1").await.x_cache(), "HIT", "nothing was deleted");
    let ok = app
        .client
        .get(format!("{}/admin/cache/keys?pattern=product:*", app.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let flushed =
        app.client.post(format!("{}/api/flush-cache", app.base)).bearer_auth(token).send().await.expect("request");
    assert_eq!(flushed.status(), 200);
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.json["patterns"]["admin_token_required"], true);
    assert!(!stats.text.contains(token), "the token never appears");
}

#[tokio::test]
async fn admin_token_guards_every_write_and_leaves_reads_open() {
    let token = "write-t0ken";
    let app = TestApp::start_with(|c| c.admin_token = Some(token.into())).await;
    let create = r#"{"sku":"AUTH-1","name":"Guarded","price":1,"stock":1,"category_id":1}"#;
    assert_error(&app.post("/api/products", create).await, 401);
    assert_error(&app.put("/api/products/1", r#"{"stock": 7}"#).await, 401);
    assert_error(&app.delete("/api/products/2").await, 401);
    assert_error(&app.post("/api/warm", "").await, 401);
    let product = app.get("/api/products/1").await;
    assert_eq!(product.status, 200, "reads stay open");
    assert_ne!(product.json["data"]["stock"], 7, "the unauthorised update wrote nothing");
    assert_eq!(app.get("/api/products/2").await.status, 200, "the unauthorised delete deleted nothing");
    assert_eq!(app.get("/api/stats").await.status, 200);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = app
            .client
            .put(format!("{}/api/products/1", app.base))
            .header("authorization", format!("{scheme} {token}"))
            .header("content-type", "application/json")
            .body(r#"{"stock": 7}"#)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "scheme {scheme}");
    }
    let r = app
        .client
        .post(format!("{}/api/products", app.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(create)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_skips_a_hung_redis_without_waiting() {
    let redis = blocking(|| RedisServer::start(RedisOptions::default())).expect("redis");
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let app = TestApp::start_on(&db_url, &redis.url(), |c| {
        c.redis_timeout_ms = 300;
        c.breaker_failures = 2;
        c.breaker_cooldown_ms = 60_000;
    })
    .await;
    app.get("/api/products/1").await;
    blocking(|| redis.pause()).expect("pause");
    let redis_ms = |r: &common::Resp| -> f64 {
        r.header("server-timing")
            .split(", ")
            .find_map(|p| p.strip_prefix("redis;dur="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    for _ in 0..2 {
        let r = app.get("/api/products/1").await;
        assert_eq!(r.status, 200);
        assert!(redis_ms(&r) >= 300.0, "closed breaker: the request waited for the Redis timeout");
    }
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.json["redis"]["circuit"], "open", "{}", stats.text);
    for _ in 0..5 {
        let r = app.get("/api/products/1").await;
        assert_eq!((r.status.as_u16(), r.header("x-cache-error")), (200, "redis unavailable"));
        assert!(redis_ms(&r) < 50.0, "open breaker: Redis is skipped, no timeout ({} ms)", redis_ms(&r));
    }
    assert_eq!(app.get("/readyz").await.json["redis"]["circuit"], "open");
    assert_eq!(app.metric("redis_circuit_state").await, 2.0);
    blocking(|| redis.resume()).expect("resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_maxmemory_redis_evicts_and_the_app_keeps_working() {
    let redis = blocking(|| RedisServer::start(RedisOptions { maxmemory: "2mb".into(), ..Default::default() }))
        .expect("small redis");
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let app = Arc::new(TestApp::start_on(&db_url, &redis.url(), |_| {}).await);
    let terms = ["laptop", "headphones", "coffee", "yoga", "knife", "tent", "jacket", "puzzle", "a", "e", "o", "s"];
    let mut failures = 0;
    // Bounded: 12 terms x 100 limits of search results, each stored under its own key, far more than 2 MB.
    for chunk in (1..=100u32).collect::<Vec<_>>().chunks(10) {
        let requests = chunk.iter().flat_map(|limit| terms.iter().map(move |t| (t, *limit)));
        let results = join_all(requests.map(|(t, l)| {
            let app = app.clone();
            async move { app.get(&format!("/api/products?q={t}&limit={l}")).await.status }
        }))
        .await;
        failures += results.iter().filter(|s| **s != 200).count();
    }
    assert_eq!(failures, 0, "every request answered while Redis evicted");
    let stats = app.get("/api/stats").await;
    let evicted = stats.json["redis"]["evicted_keys"].as_u64().expect("evicted_keys");
    assert!(evicted > 0, "Redis evicted keys: {}", stats.text);
    assert_eq!(stats.json["redis"]["maxmemory_policy"], "allkeys-lru");
    assert!(stats.json["redis"]["used_memory"].as_u64() <= Some(3 * 1024 * 1024));
    let r = app.get("/api/products/1").await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/api/products/1").await.x_cache(), "HIT", "the cache still works at the limit");
}
