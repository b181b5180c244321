//! The dashboard's experiments and the picture the replicas share, against real PostgreSQL and Redis: the
//! stampede, the naive write beside the API's, maxmemory shrunk and restored, background traffic and the
//! timeline, the artificial delay, and counters, recent requests and flushes across two replicas.

mod common;

use std::time::{Duration, Instant};

use cache_demo_testkit::RedisOptions;
use common::{Resp, TestApp, assert_error, fresh_db, shared_pg, shared_redis};
use serde_json::{Value, json};

/// Polls `path` (at most 10 s) until `done` holds for its JSON body.
async fn until(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.get(path).await;
        if done(&r.json) {
            return r.json;
        }
        assert!(Instant::now() < deadline, "{path} never reached the expected state: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} in {v}"))
}

fn price(r: &Resp) -> f64 {
    r.json["data"]["price"].as_f64().unwrap_or_else(|| panic!("a price in {}", r.text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_makes_one_query_with_single_flight_and_many_without() {
    // The delay keeps the first query in flight while the others arrive.
    let app = TestApp::start_with(|c| c.db_delay_ms = 100).await;
    let on = app.post("/api/labs/stampede", r#"{"requests": 40, "single_flight": true}"#).await;
    assert_eq!(on.status, 200, "{}", on.text);
    assert_eq!(on.json["requests"], 40);
    assert_eq!(on.json["database_queries"], 1, "{}", on.text);
    let shared = on.json["coalesced"].as_u64().unwrap_or(0) + on.json["hits"].as_u64().unwrap_or(0);
    assert_eq!(shared, 39, "the others shared that query: {}", on.text);
    assert_eq!(on.json["key"], app.key("categories:stats"));
    assert_eq!(on.json["db_delay_ms"], 100);

    let off = app.post("/api/labs/stampede", r#"{"requests": 40, "single_flight": false}"#).await;
    assert_eq!(off.status, 200, "{}", off.text);
    let queries = off.json["database_queries"].as_u64().unwrap_or(0);
    assert!(queries > 1, "without single-flight every concurrent miss queries: {}", off.text);
    assert_eq!(off.json["coalesced"], 0);
    assert_eq!(queries + off.json["hits"].as_u64().unwrap_or(0), 40, "{}", off.text);
    // The key came back: a normal read now hits.
    assert_eq!(app.get("/api/categories").await.x_cache(), "HIT");

    for bad in [r#"{"requests": 1, "single_flight": true}"#, r#"{"requests": 201, "single_flight": true}"#] {
        assert_error(&app.post("/api/labs/stampede", bad).await, 400);
    }
    assert_error(&app.post("/api/labs/stampede", r#"{"requests": 5}"#).await, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_write_is_served_stale_until_the_ttl_and_an_api_write_is_seen_at_once() {
    let app = TestApp::start_with(|c| {
        c.cache_ttl_product_secs = Some(2);
        c.cache_ttl_jitter_pct = 0;
    })
    .await;
    let old_1 = price(&app.get("/api/products/1").await);
    let old_2 = price(&app.get("/api/products/2").await);
    assert!(common::eventually_hit(&app, "/api/products/1").await);

    let naive = app.post("/api/labs/staleness/naive-write", &json!({"id": 1, "price": old_1 + 5.0}).to_string()).await;
    assert_eq!(naive.status, 200, "{}", naive.text);
    assert_eq!(naive.json["invalidated"], false);
    assert_eq!(naive.json["key"], app.key("product:1"));
    let lab = app.get("/api/labs/staleness?id=1").await.json;
    assert_eq!(lab["stale"], true, "{lab}");
    assert_eq!(lab["cached_price"].as_f64(), Some(old_1));
    assert_eq!(lab["database_price"].as_f64(), Some(old_1 + 5.0));
    assert!(lab["ttl_ms"].as_u64().is_some_and(|t| t <= 2_000), "{lab}");
    let served = app.get("/api/products/1").await;
    assert_eq!((served.x_cache(), price(&served)), ("HIT", old_1), "the old price, from Redis");

    // The API's write invalidates: the next read misses and has the new price.
    let put = app.put("/api/products/2", &json!({"price": old_2 + 1.0}).to_string()).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let after = app.get("/api/products/2").await;
    assert_eq!((after.x_cache(), price(&after)), ("MISS", old_2 + 1.0));

    // The naive write is seen only once the entry expired.
    let fresh = until(&app, "/api/labs/staleness?id=1", |v| v["cached"] == false).await;
    assert_eq!(fresh["stale"], false);
    let reread = app.get("/api/products/1").await;
    assert_eq!((reread.x_cache(), price(&reread)), ("MISS", old_1 + 5.0));
    assert_eq!(app.get("/api/labs/staleness?id=1").await.json["stale"], false);

    assert_error(&app.post("/api/labs/staleness/naive-write", r#"{"id": 1, "price": -1}"#).await, 422);
    assert_error(&app.post("/api/labs/staleness/naive-write", r#"{"id": 999999, "price": 1}"#).await, 404);
    assert_error(&app.get("/api/labs/staleness?id=abc").await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxmemory_shrinks_evicts_and_comes_back() {
    let (app, _redis) = TestApp::start_on_own_redis(RedisOptions::default(), |_| {}).await;
    let before = app.get("/api/labs/eviction").await.json;
    assert_eq!(before["maxmemory"], 64 * 1024 * 1024, "{before}");
    assert_eq!((before["shrunk"].clone(), before["policy"].clone()), (json!(false), json!("allkeys-lru")));
    assert!(before["products"].as_i64().is_some_and(|n| n >= 500), "{before}");

    for bad in [1000, 65 * 1024 * 1024] {
        assert_error(&app.post("/api/labs/eviction/shrink", &json!({ "maxmemory": bad }).to_string()).await, 400);
    }
    assert_error(&app.post("/api/labs/eviction/shrink", r#"{"headroom": 10}"#).await, 400);
    let exact = app.post("/api/labs/eviction/shrink", r#"{"maxmemory": 33554432}"#).await;
    assert_eq!(exact.json["maxmemory"], 33554432, "{}", exact.text);
    let shrunk = app.post("/api/labs/eviction/shrink", r#"{"headroom": 262144}"#).await;
    assert_eq!(shrunk.status, 200, "{}", shrunk.text);
    let limit = shrunk.json["maxmemory"].as_u64().expect("maxmemory");
    let used = before["used_memory"].as_u64().expect("used");
    assert!(limit > used && limit < used + 512 * 1024, "{}", shrunk.text);
    assert_eq!(shrunk.json["shrunk"], true);
    assert_eq!(shrunk.json["configured_maxmemory"], 64 * 1024 * 1024, "the first size is the one remembered");

    // A uniform load over every product overflows that room: Redis evicts, and answers keep coming.
    let start = app.post("/api/labs/traffic", r#"{"pattern": "uniform", "seconds": 4}"#).await;
    assert_eq!(start.status, 202, "{}", start.text);
    let done = until(&app, "/api/labs/traffic", |v| v["running"] == false).await;
    assert_eq!(done["errors"], 0, "{done}");
    let evicted = app.get("/api/labs/eviction").await.json;
    assert!(evicted["evicted_keys"].as_u64().is_some_and(|n| n > 0), "{evicted}");
    assert!(evicted["used_memory"].as_u64().is_some_and(|m| m <= limit + 64 * 1024), "{evicted}");
    assert!(n(&done, "misses") > n(&done, "requests") / 4, "evictions keep the hit ratio down: {done}");

    let restored = app.post("/api/labs/eviction/restore", "").await;
    assert_eq!(restored.status, 200, "{}", restored.text);
    assert_eq!(
        (restored.json["maxmemory"].clone(), restored.json["shrunk"].clone()),
        (json!(64 * 1024 * 1024), json!(false))
    );
    assert_error(&app.post("/api/labs/eviction/restore", "").await, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_traffic_is_bounded_and_drawn_on_the_timeline() {
    let app = TestApp::start().await;
    let started = app.post("/api/labs/traffic", r#"{"pattern": "hot", "seconds": 3}"#).await;
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.json["running"], true);
    assert_error(&app.post("/api/labs/traffic", r#"{"pattern": "hot", "seconds": 3}"#).await, 429);
    for bad in [r#"{"pattern": "hot", "seconds": 0}"#, r#"{"pattern": "hot", "seconds": 121}"#] {
        assert_error(&app.post("/api/labs/traffic", bad).await, 400);
    }
    assert_error(&app.post("/api/labs/traffic", r#"{"pattern": "everything", "seconds": 3}"#).await, 422);

    let done = until(&app, "/api/labs/traffic", |v| v["running"] == false).await;
    let n = |f: &str| done[f].as_u64().unwrap_or(0);
    assert!(n("requests") > 100, "{done}");
    assert_eq!(n("hits") + n("misses") + n("errors"), n("requests"));
    assert!(n("hits") > n("misses"), "a hot set fits: mostly hits: {done}");
    // At most the rate limit, over the seconds it ran (and a tick of slack per worker).
    assert!(n("requests") <= 400 * 3 + 8, "{done}");

    let timeline = until(&app, "/api/timeline", |v| {
        v["points"].as_array().is_some_and(|p| p.iter().any(|p| p["hits_per_sec"].as_f64().unwrap_or(0.0) > 10.0))
    })
    .await;
    assert_eq!((timeline["interval_secs"].clone(), timeline["window_secs"].clone()), (json!(2), json!(300)));
    let point = timeline["points"].as_array().and_then(|p| p.iter().find(|p| p["hits_per_sec"].as_f64() > Some(10.0)));
    let point = point.expect("a busy point");
    assert!(point["hit_ratio"].as_f64().is_some_and(|r| r > 0.5), "{point}");
    assert!(point["db_queries_per_sec"].as_f64().is_some(), "{point}");

    // A stop ends a run at once.
    assert_eq!(app.post("/api/labs/traffic", r#"{"pattern": "uniform", "seconds": 60}"#).await.status, 202);
    let stopped = app.delete("/api/labs/traffic").await;
    assert_eq!(stopped.json["running"], false, "{}", stopped.text);
    until(&app, "/api/labs/traffic", |v| v["remaining_ms"] == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_show_the_same_totals_each_others_requests_and_one_flush() {
    let redis = shared_redis().await;
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let prefix = common::unique_prefix();
    let a = TestApp::start_on(&db_url, &redis.url(), |c| {
        c.cache_prefix = prefix.clone();
        c.replica_name = Some("replica-a".into());
    })
    .await;
    let b = TestApp::start_on(&db_url, &redis.url(), |c| {
        c.cache_prefix = prefix.clone();
        c.replica_name = Some("replica-b".into());
    })
    .await;
    assert_eq!(a.get("/api/categories").await.x_cache(), "MISS");
    for _ in 0..3 {
        assert_eq!(b.get("/api/categories").await.x_cache(), "HIT");
    }
    let both = |v: &Value| v["fleet"]["totals"]["hits"] == 3 && v["fleet"]["totals"]["misses"] == 1;
    let seen_a = until(&a, "/api/stats", both).await;
    let seen_b = until(&b, "/api/stats", both).await;
    assert_eq!(seen_a["fleet"]["aggregated"], true);
    for (seen, me) in [(&seen_a, "replica-a"), (&seen_b, "replica-b")] {
        assert_eq!(seen["replica"], me);
        let replicas = seen["fleet"]["replicas"].as_array().expect("replicas");
        let ids: Vec<&str> = replicas.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids, ["replica-a", "replica-b"]);
        let own = replicas.iter().find(|r| r["self"] == true).expect("self");
        assert_eq!(own["id"], me);
    }
    let by_id =
        |v: &Value, id: &str| v["fleet"]["replicas"].as_array().and_then(|r| r.iter().find(|r| r["id"] == id).cloned());
    assert_eq!(by_id(&seen_a, "replica-b").map(|r| r["hits"].clone()), Some(json!(3)));
    assert_eq!(by_id(&seen_a, "replica-a").map(|r| r["db_queries"].clone()), Some(json!(1)));

    // The recent list of either replica has both replicas' requests, saying which one answered.
    let recent = until(&a, "/api/recent", |v| {
        let rows = v["requests"].as_array().cloned().unwrap_or_default();
        rows.iter().any(|r| r["replica"] == "replica-b") && rows.iter().any(|r| r["replica"] == "replica-a")
    })
    .await;
    let row = recent["requests"].as_array().and_then(|r| r.iter().find(|r| r["replica"] == "replica-b").cloned());
    assert_eq!(row.map(|r| (r["path"].clone(), r["cache"].clone())), Some((json!("/api/categories"), json!("HIT"))));

    // A flush on one replica resets every replica's counters.
    assert_eq!(a.post("/api/flush-cache", "").await.status, 200);
    let zero = |v: &Value| {
        v["fleet"]["totals"]["hits"] == 0 && v["fleet"]["replicas"].as_array().is_some_and(|r| r.len() == 2)
    };
    until(&b, "/api/stats", zero).await;
    until(&a, "/api/stats", zero).await;
    assert_eq!(b.get("/api/stats").await.json["hits"], 0, "b's own counters too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_flush_on_one_replica_the_others_next_miss_is_stored_again() {
    let redis = shared_redis().await;
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let prefix = common::unique_prefix();
    let a = TestApp::start_on(&db_url, &redis.url(), |c| c.cache_prefix = prefix.clone()).await;
    let b = TestApp::start_on(&db_url, &redis.url(), |c| c.cache_prefix = prefix.clone()).await;
    a.wait_subscribed().await;
    b.wait_subscribed().await;
    // b's load of product 4 has just finished; the tokens outlive the flush, so without the flush's broadcast b
    // would hand that finished load's value to its next miss, which would then store nothing.
    assert_eq!(b.get("/api/products/4").await.x_cache(), "MISS");
    assert_eq!(a.post("/api/flush-cache", "").await.status, 200);
    assert_eq!(b.get("/api/products/4").await.x_cache(), "MISS");
    assert_eq!(b.get("/api/products/4").await.x_cache(), "HIT", "b's miss after the flush was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artificial_delay_is_set_for_every_replica_by_the_admin() {
    let redis = shared_redis().await;
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let prefix = common::unique_prefix();
    let tweak = |c: &mut cache_demo::Config| {
        c.cache_prefix = prefix.clone();
        c.admin_token = Some("lab-token".into());
    };
    let a = TestApp::start_on(&db_url, &redis.url(), tweak).await;
    let b = TestApp::start_on(&db_url, &redis.url(), tweak).await;
    assert_error(&a.put("/api/labs/db-delay", r#"{"ms": 50}"#).await, 401);
    for path in
        ["/api/labs/stampede", "/api/labs/traffic", "/api/labs/eviction/shrink", "/api/labs/staleness/naive-write"]
    {
        assert_error(&a.post(path, "{}").await, 401);
    }
    let put = |ms: &str| {
        a.client
            .put(format!("{}/api/labs/db-delay", a.base))
            .bearer_auth("lab-token")
            .header("content-type", "application/json")
            .body(ms.to_owned())
            .send()
    };
    assert_eq!(put(r#"{"ms": 5000}"#).await.expect("PUT").status(), 400);
    let set = put(r#"{"ms": 50}"#).await.expect("PUT");
    assert_eq!(set.status(), 200);
    assert_eq!(a.get("/api/stats").await.json["db_delay_ms"], 50, "at once where it was set");
    until(&b, "/api/stats", |v| v["db_delay_ms"] == 50).await;
    let compared = b.get("/api/compare?endpoint=product&id=3").await;
    assert!(compared.json["database"]["ms"].as_f64().is_some_and(|ms| ms >= 50.0), "{}", compared.text);
    assert_eq!(compared.json["db_delay_ms"], 50);
    assert_eq!(put(r#"{"ms": 0}"#).await.expect("PUT").status(), 200);
    until(&b, "/api/stats", |v| v["db_delay_ms"] == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_entries_show_on_the_timeline_as_misses_under_steady_traffic() {
    // The hot set (52 keys) is filled in the first fraction of a second; after that, only expiries miss.
    let app = TestApp::start_with(|c| {
        c.cache_ttl_secs = 2;
        c.cache_ttl_jitter_pct = 0;
    })
    .await;
    let started = app.post("/api/labs/traffic", r#"{"pattern": "hot", "seconds": 9}"#).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let done = until(&app, "/api/labs/traffic", |v| v["running"] == false).await;
    assert!(n(&done, "misses") > 52 * 2, "every key missed again after expiring: {done}");
    let timeline = app.get("/api/timeline").await.json;
    let points = timeline["points"].as_array().cloned().unwrap_or_default();
    let busy: Vec<&Value> = points.iter().filter(|p| p["hits_per_sec"].as_f64().unwrap_or(0.0) > 50.0).collect();
    assert!(busy.len() >= 3, "{timeline}");
    // Past the first fill, points still show misses and a ratio below 100%: the expiries' dips.
    let dips =
        busy[1..].iter().filter(|p| p["misses_per_sec"].as_f64() > Some(0.0) && p["hit_ratio"].as_f64() < Some(1.0));
    assert!(dips.count() >= 2, "{timeline}");
}
