//! The HTTP API against real PostgreSQL and Redis: cache-aside behaviour, invalidation, stats, bad input.

mod common;

use common::{TestApp, assert_error, psql, shared_pg, shared_redis};
use serde_json::Value;

const CACHEABLE: &[&str] =
    &["/api/categories", "/api/products?q=laptop&limit=20", "/api/top-products?limit=10", "/api/products/1"];

/// The `data` part of a body as raw text, to compare HIT and MISS bodies byte for byte.
fn data_text(body: &str) -> &str {
    let start = body.find("\"data\":").expect("data field") + "\"data\":".len();
    &body[start..body.len() - 1]
}

#[tokio::test]
async fn miss_then_hit_returns_identical_body() {
    let app = TestApp::start().await;
    for path in CACHEABLE {
        let miss = app.get(path).await;
        assert_eq!(miss.status, 200, "{path}: {}", miss.text);
        assert_eq!(miss.x_cache(), "MISS", "{path}");
        assert_eq!(miss.json["source"], "database", "{path}");
        let hit = app.get(path).await;
        assert_eq!(hit.x_cache(), "HIT", "{path}");
        assert_eq!(hit.json["source"], "cache", "{path}");
        assert_eq!(data_text(&miss.text), data_text(&hit.text), "{path}: data differs between MISS and HIT");
        assert_eq!(miss.json["data"], hit.json["data"]);
        for r in [&miss, &hit] {
            let elapsed = r.json["elapsed_ms"].as_f64().expect("elapsed_ms is a number");
            assert!(elapsed > 0.0, "{path}: elapsed_ms {elapsed}");
            assert!(r.header("server-timing").starts_with("total;dur="), "{path}: {}", r.header("server-timing"));
            let keys: Vec<&String> = r.json.as_object().expect("object").keys().collect();
            assert_eq!(keys, ["data", "elapsed_ms", "source"], "{path}: body fields");
        }
        assert!(miss.header("server-timing").contains("db;dur="), "a miss reports database time");
        assert!(!hit.header("server-timing").contains("db;dur="), "a hit does not touch the database");
    }
}

#[tokio::test]
async fn responses_carry_the_expected_data() {
    let app = TestApp::start().await;
    let cats = app.get("/api/categories").await;
    let categories = cats.json["data"]["categories"].as_array().expect("categories");
    assert_eq!(categories.len(), 10);
    let products: i64 = categories.iter().map(|c| c["product_count"].as_i64().expect("count")).sum();
    assert_eq!(products, 500);
    let reviews: i64 = categories.iter().map(|c| c["review_count"].as_i64().expect("count")).sum();
    assert_eq!(reviews, 5000);
    for c in categories {
        assert!(
            c["min_price"].as_f64() <= c["avg_price"].as_f64() && c["avg_price"].as_f64() <= c["max_price"].as_f64()
        );
        assert!((1.0..=5.0).contains(&c["avg_rating"].as_f64().expect("rating")));
    }

    let search = app.get("/api/products?q=LAPTOP&limit=5").await;
    let found = search.json["data"]["products"].as_array().expect("products");
    assert_eq!(found.len(), 5);
    assert_eq!(search.json["data"]["query"], "laptop");
    assert!(found.iter().all(|p| p["price"].is_number()), "prices are JSON numbers");

    let top = app.get("/api/top-products?limit=10").await;
    let ranked = top.json["data"]["products"].as_array().expect("products");
    assert_eq!(ranked.len(), 10);
    let ratings: Vec<f64> = ranked.iter().map(|p| p["avg_rating"].as_f64().expect("rating")).collect();
    assert!(ratings.windows(2).all(|w| w[0] >= w[1]), "ordered by rating: {ratings:?}");
    assert!(ranked.iter().all(|p| p["category_rank"].as_i64() >= Some(1)));

    let one = app.get("/api/products/1").await;
    let reviews = &one.json["data"]["reviews"];
    let dist: i64 = reviews["distribution"].as_array().expect("distribution").iter().filter_map(Value::as_i64).sum();
    assert_eq!(dist, reviews["count"].as_i64().expect("count"));
    assert!(one.json["data"]["price"].is_number());
}

#[tokio::test]
async fn entries_get_the_configured_ttl_with_jitter() {
    let app = TestApp::start_with(|c| {
        c.cache_ttl_secs = 60;
        c.cache_ttl_categories_secs = Some(300);
        c.cache_ttl_jitter_pct = 10;
    })
    .await;
    let redis = shared_redis().await;
    app.get("/api/categories").await;
    let ttl: i64 = redis.cli(&["TTL", &app.key("categories:stats")]).expect("TTL").parse().expect("number");
    assert!((269..=330).contains(&ttl), "TTL categories:stats = {ttl}, expected 300 ± 10%");
    let mut pttls = Vec::new();
    for id in 1..=20 {
        app.get(&format!("/api/products/{id}")).await;
        let ms: i64 = redis.cli(&["PTTL", &app.key(&format!("product:{id}"))]).expect("PTTL").parse().expect("number");
        assert!((53_000..=66_000).contains(&ms), "PTTL product:{id} = {ms}, expected 60 s ± 10%");
        pttls.push(ms / 1000);
    }
    pttls.sort_unstable();
    pttls.dedup();
    assert!(pttls.len() >= 5, "keys written together expire at different seconds: {pttls:?}");
}

#[tokio::test]
async fn without_jitter_every_entry_gets_the_exact_ttl() {
    let app = TestApp::start_with(|c| c.cache_ttl_jitter_pct = 0).await;
    let redis = shared_redis().await;
    app.get("/api/products/1").await;
    let ttl: i64 = redis.cli(&["TTL", &app.key("product:1")]).expect("TTL").parse().expect("number");
    assert!((59..=60).contains(&ttl), "TTL product:1 = {ttl}");
}

#[tokio::test]
async fn bypass_never_stores() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    for path in CACHEABLE {
        let sep = if path.contains('?') { '&' } else { '?' };
        for _ in 0..2 {
            let r = app.get(&format!("{path}{sep}cache=off")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.x_cache(), "BYPASS");
            assert_eq!(r.json["source"], "database");
        }
    }
    let keys = redis.cli(&["--scan", "--pattern", &format!("{}:*", app.prefix)]).expect("scan");
    assert_eq!(keys, "", "bypassed requests stored keys");
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.json["bypasses"], 8);
    assert_eq!(stats.json["hits"], 0);
    assert_eq!(stats.json["keys"], 0);
}

/// Warms every kind of entry and returns the product's price as served.
async fn warm(app: &TestApp, id: i32) -> f64 {
    for path in ["/api/categories", "/api/products?q=laptop", "/api/top-products", "/api/products?q=headphones&limit=5"]
    {
        app.get(path).await;
    }
    let r = app.get(&format!("/api/products/{id}")).await;
    r.json["data"]["price"].as_f64().expect("price")
}

#[tokio::test]
async fn update_invalidates_product_lists_and_stats() {
    let app = TestApp::start().await;
    let id = 1;
    let old_price = warm(&app, id).await;
    assert_eq!(app.get("/api/products/1").await.x_cache(), "HIT");
    let new_price = old_price + 1.25;
    let r = app.put(&format!("/api/products/{id}"), &format!(r#"{{"price": {new_price}}}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["product"]["price"].as_f64(), Some(new_price));
    let removed: Vec<&str> =
        r.json["invalidated"]["keys"].as_array().expect("keys").iter().filter_map(Value::as_str).collect();
    for key in [
        "product:1",
        "categories:stats",
        "products:search:laptop:20",
        "products:top:10",
        "products:search:headphones:5",
    ] {
        assert!(removed.contains(&key), "{key} not invalidated: {removed:?}");
    }
    assert_eq!(r.json["invalidated"]["count"], 5);
    for path in ["/api/products/1", "/api/categories", "/api/products?q=laptop", "/api/top-products"] {
        assert_eq!(app.get(path).await.x_cache(), "MISS", "{path} after update");
    }
    let after = app.get("/api/products/1").await;
    assert_eq!(after.x_cache(), "HIT");
    assert_eq!(after.json["data"]["price"].as_f64(), Some(new_price));
}

#[tokio::test]
async fn update_of_one_product_keeps_other_products_cached() {
    let app = TestApp::start().await;
    app.get("/api/products/2").await;
    let r = app.put("/api/products/1", r#"{"stock": 7}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.get("/api/products/2").await.x_cache(), "HIT");
}

#[tokio::test]
async fn create_shows_up_in_cached_search() {
    let app = TestApp::start().await;
    let before = app.get("/api/products?q=zyzzyva").await;
    assert_eq!(before.json["data"]["count"], 0);
    assert_eq!(app.get("/api/products?q=zyzzyva").await.x_cache(), "HIT");
    let body = r#"{"sku":"ZZ-1","name":"Zyzzyva Travel Laptop","description":"Tiny.","price":499.00,"stock":3,"category_id":1}"#;
    let created = app.post("/api/products", body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["product"]["id"], 501);
    let after = app.get("/api/products?q=zyzzyva").await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(after.json["data"]["count"], 1);
    assert_eq!(after.json["data"]["products"][0]["sku"], "ZZ-1");
}

#[tokio::test]
async fn delete_removes_product_and_its_entries() {
    let app = TestApp::start().await;
    warm(&app, 3).await;
    let r = app.delete("/api/products/3").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["deleted"], 3);
    assert_error(&app.get("/api/products/3").await, 404);
    assert_error(&app.delete("/api/products/3").await, 404);
    let cats = app.get("/api/categories").await;
    assert_eq!(cats.x_cache(), "MISS");
    let total: i64 = cats.json["data"]["categories"]
        .as_array()
        .expect("cats")
        .iter()
        .filter_map(|c| c["product_count"].as_i64())
        .sum();
    assert_eq!(total, 499);
}

#[tokio::test]
async fn flush_removes_only_this_apps_keys_and_resets_stats() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    let foreign = format!("other-{}:categories:stats", app.prefix);
    let lookalike = format!("{}x:product:1", app.prefix);
    redis.cli(&["SET", &foreign, "keep"]).expect("set");
    redis.cli(&["SET", &lookalike, "keep"]).expect("set");
    warm(&app, 1).await;
    app.get("/api/products/1").await;
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.json["hits"], 1);
    let keys = stats.json["keys"].as_u64().expect("keys");
    assert_eq!(keys, 5, "5 entries (not the tokens or the catalogue index): {}", stats.text);
    let generations = app.key("generation:*");
    let tokens = common::count_keys(redis, &generations);
    assert_eq!(tokens, 2, "product 1 and the catalogue");

    let r = app.post("/api/flush-cache", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["deleted"].as_u64(), Some(keys));
    assert_eq!(redis.cli(&["GET", &foreign]).expect("get"), "keep");
    assert_eq!(redis.cli(&["GET", &lookalike]).expect("get"), "keep");
    let stats = app.get("/api/stats").await;
    assert_eq!(
        (stats.json["hits"].as_u64(), stats.json["misses"].as_u64(), stats.json["keys"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    // The tokens are not cached values: they stay, so the next misses find theirs in one round trip.
    assert_eq!(common::count_keys(redis, &generations), tokens);
    assert_eq!(app.get("/api/products/1").await.x_cache(), "MISS", "the next request misses");
    assert_eq!(app.get("/api/products/1").await.x_cache(), "HIT", "and its fill was stored under the kept token");
}

#[tokio::test]
async fn a_scope_whose_token_was_evicted_gets_a_new_one_and_caches_again() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    let token = app.key("generation:product:2");
    assert_eq!(app.get("/api/products/2").await.x_cache(), "MISS");
    assert_eq!(app.get("/api/products/2").await.x_cache(), "HIT");
    let first = redis.cli(&["GET", &token]).expect("GET");
    assert_eq!(first.len(), 16, "a token: {first:?}");
    // As an LRU policy might: the token goes, and here the entry too.
    redis.cli(&["DEL", &token]).expect("DEL");
    redis.cli(&["DEL", &app.key("product:2")]).expect("DEL");
    assert_eq!(app.get("/api/products/2").await.x_cache(), "MISS");
    let second = redis.cli(&["GET", &token]).expect("GET");
    assert!(second.len() == 16 && second != first, "a new random token: {second:?} after {first:?}");
    assert_eq!(app.get("/api/products/2").await.x_cache(), "HIT", "the fill was stored under the new token");
    assert_eq!(app.metric(r#"redis_command_duration_seconds_count{command="lookup"}"#).await, 4.0);
}

#[tokio::test]
async fn a_claim_redis_refuses_is_answered_from_postgresql_and_stores_nothing() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    // The token's key holds the wrong type: the lookup reads it as no token, and the claim is refused (WRONGTYPE).
    redis.cli(&["HSET", &app.key("generation:product:3"), "not", "a string"]).expect("HSET");
    for _ in 0..2 {
        let r = app.get("/api/products/3").await;
        assert_eq!((r.status.as_u16(), r.json["data"]["id"].as_i64()), (200, Some(3)), "{}", r.text);
        assert_eq!(r.x_cache(), "MISS");
        assert_eq!(r.header("x-cache-error"), "redis unavailable");
    }
    assert_eq!(redis.cli(&["EXISTS", &app.key("product:3")]).expect("EXISTS"), "0", "nothing stored");
}

#[tokio::test]
async fn a_catalogue_hit_keeps_the_catalogue_index_as_recently_used_as_its_entries() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    let index = app.key("catalog-index");
    assert_eq!(app.get("/api/categories").await.x_cache(), "MISS");
    assert_eq!(app.get("/api/products/5").await.x_cache(), "MISS");
    // Redis's LRU clock counts whole seconds: let the index age, then hit a catalogue entry, and a product's.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let idle = || redis.cli(&["OBJECT", "IDLETIME", &index]).expect("IDLETIME").parse::<u64>().expect("seconds");
    assert!(idle() >= 2, "the index aged");
    assert_eq!(app.get("/api/products/5").await.x_cache(), "HIT");
    assert!(idle() >= 2, "a product's lookup does not read the index");
    assert_eq!(app.get("/api/categories").await.x_cache(), "HIT");
    assert!(idle() <= 1, "a catalogue lookup read the index");
}

#[tokio::test]
async fn a_catalogue_index_of_the_wrong_type_stores_no_catalogue_entry() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    // An entry stored but not listed in the index could never be found by a write: the fill must store nothing.
    redis.cli(&["SET", &app.key("catalog-index"), "not a sorted set"]).expect("SET");
    for _ in 0..2 {
        let r = app.get("/api/categories").await;
        assert_eq!((r.status.as_u16(), r.x_cache()), (200, "MISS"), "{}", r.text);
    }
    assert_eq!(redis.cli(&["EXISTS", &app.key("categories:stats")]).expect("EXISTS"), "0", "nothing stored");
    assert_eq!(app.get("/api/products/4").await.x_cache(), "MISS");
    assert_eq!(app.get("/api/products/4").await.x_cache(), "HIT", "a product's entry needs no index");
}

#[tokio::test]
async fn stats_report_redis_memory_and_policy() {
    let app = TestApp::start().await;
    app.get("/api/products/1").await;
    app.get("/api/products/1").await;
    let s = app.get("/api/stats").await;
    assert_eq!(s.status, 200);
    assert_eq!(s.json["hits"], 1);
    assert_eq!(s.json["misses"], 1);
    assert_eq!(s.json["hit_rate"], 0.5);
    assert_eq!(s.json["redis"]["available"], true);
    assert_eq!(s.json["redis"]["maxmemory"], 64 * 1024 * 1024);
    assert_eq!(s.json["redis"]["maxmemory_policy"], "allkeys-lru");
    assert!(s.json["redis"]["used_memory"].as_u64() > Some(0));
    assert!(s.json["redis"]["evicted_keys"].is_u64());
    assert!(s.json["redis"]["expired_keys"].is_u64());
    assert!(s.json["uptime_secs"].is_u64());
    assert_eq!(s.json["ttl_secs"]["product"], 60);
    assert_eq!(s.json["db_delay_ms"], 0);
}

#[tokio::test]
async fn secrets_never_appear_in_stats_metrics_or_probes() {
    let password = "s3cret-Pa55word-for-test";
    // Started on this test's thread: the server is tied to the thread that spawned it.
    let redis = cache_demo_testkit::RedisServer::start(cache_demo_testkit::RedisOptions {
        password: Some(password.into()),
        ..Default::default()
    })
    .expect("redis with password");
    let pg = shared_pg().await;
    let (db_url, _) = common::fresh_db(pg).await;
    let no_password_url = format!("redis://127.0.0.1:{}/", redis.port());
    let app = TestApp::start_on(&db_url, &no_password_url, |c| c.redis_password = Some(password.into())).await;
    let miss = app.get("/api/products/1").await;
    assert_eq!(miss.x_cache(), "MISS", "authenticated with REDIS_PASSWORD");
    assert_eq!(app.get("/api/products/1").await.x_cache(), "HIT");
    for path in ["/api/stats", "/metrics", "/readyz", "/healthz"] {
        let r = app.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.text.contains(password), "{path} leaks the password");
        assert!(!r.text.contains("postgres://"), "{path} leaks the database URL");
        assert!(!r.text.contains("redis://"), "{path} leaks the Redis URL");
    }
    app.stop().await;
    drop(redis);
}

#[tokio::test]
async fn metrics_count_outcomes_and_time_requests() {
    let app = TestApp::start().await;
    app.get("/api/products/1").await;
    app.get("/api/products/1").await;
    app.get("/api/products/1?cache=off").await;
    let m = app.get("/metrics").await.text;
    for line in [
        r#"cache_requests_total{endpoint="product",result="miss"} 1"#,
        r#"cache_requests_total{endpoint="product",result="hit"} 1"#,
        r#"cache_requests_total{endpoint="product",result="bypass"} 1"#,
    ] {
        assert!(m.contains(line), "missing {line}\n{m}");
    }
    assert!(m.contains(r#"http_request_duration_seconds_count{method="GET",route="/api/products/{id}",source="cache",status="200"} 1"#), "{m}");
    assert!(m.contains(r#"http_request_duration_seconds_count{method="GET",route="/api/products/{id}",source="database",status="200"} 2"#), "{m}");
    assert!(m.contains(r#"db_query_duration_seconds_count{query="product"} 2"#), "{m}");
    assert!(m.contains(r#"redis_command_duration_seconds_count{command="lookup"}"#), "{m}");
    assert!(m.contains("redis_up 1"), "{m}");
    let rss = m.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).expect("resident memory metric");
    assert!(rss.parse::<f64>().is_ok_and(|b| b > 1_000_000.0), "{rss}");
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_labelled_without_new_series() {
    let app = TestApp::start().await;
    assert_eq!(app.get("/wp-login.php").await.status, 404);
    assert_eq!(app.get("/api/products/1/extra").await.status, 404);
    assert_eq!(app.send(reqwest::Method::PATCH, "/api/products/1", None).await.status, 405);
    let m = app.get("/metrics").await.text;
    for line in [
        r#"http_request_duration_seconds_count{method="GET",route="unmatched",source="none",status="404"} 2"#,
        r#"http_request_duration_seconds_count{method="PATCH",route="/api/products/{id}",source="none",status="405"} 1"#,
    ] {
        assert!(m.contains(line), "missing {line}\n{m}");
    }
    assert!(!m.contains("wp-login"), "a made-up path is no label: {m}");
}

#[tokio::test]
async fn database_delay_is_applied_and_reported() {
    let app = TestApp::start_with(|c| c.db_delay_ms = 80).await;
    let miss = app.get("/api/products/1").await;
    assert_eq!(miss.json["db_delay_ms"], 80);
    assert!(miss.json["elapsed_ms"].as_f64() >= Some(80.0), "{}", miss.text);
    let hit = app.get("/api/products/1").await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(hit.json["elapsed_ms"].as_f64() < Some(80.0), "a hit skips the delay: {}", hit.text);
    assert_eq!(app.get("/api/stats").await.json["db_delay_ms"], 80);
}

#[tokio::test]
async fn probes_report_health_and_readiness() {
    let app = TestApp::start().await;
    let h = app.get("/healthz").await;
    assert_eq!((h.status.as_u16(), h.json["status"].as_str()), (200, Some("ok")));
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["postgres"]["up"], true);
    assert_eq!(r.json["redis"]["up"], true);
}

#[tokio::test]
async fn bad_reads_get_json_errors() {
    let app = TestApp::start().await;
    let long_q = "x".repeat(101);
    let cases: &[(&str, u16)] = &[
        ("/api/products/abc", 400),
        ("/api/products/0", 400),
        ("/api/products/-5", 400),
        ("/api/products/99999999999", 400),
        ("/api/products/1.5", 400),
        ("/api/products/999999", 404),
        ("/api/products?limit=0", 400),
        ("/api/products?limit=101", 400),
        ("/api/products?limit=ten", 400),
        ("/api/top-products?limit=1000", 400),
        ("/api/categories?cache=maybe", 400),
        ("/api/categories?unknown=1", 400),
        ("/api/products/1?cache=maybe", 400),
        ("/api/products/1?unknown=1", 400),
        ("/api/products?unknown=1", 400),
        ("/api/nothing-here", 404),
    ];
    for (path, status) in cases {
        let r = app.get(path).await;
        assert_error(&r, *status);
        assert!(r.header("content-type").starts_with("application/json"), "{path}");
    }
    assert_error(&app.get(&format!("/api/products?q={long_q}")).await, 400);
    let r = app.send(reqwest::Method::PATCH, "/api/products/1", Some("{}")).await;
    assert_error(&r, 405);
    // Unknown ids are not cached (a later create of that id must be visible), and their lookup's generation
    // token is removed again: nothing is left.
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.json["keys"].as_u64(), Some(0), "no key left: {}", stats.text);
    let tokens = common::count_keys(shared_redis().await, &app.key("generation:*"));
    assert_eq!(tokens, 0, "no token left");
}

fn product_count(app: &TestApp) -> String {
    psql(
        cache_demo_testkit::shared_pg(),
        &app.db_name,
        "SELECT count(*) || '/' || sum(price)::text || '/' || sum(stock) FROM products",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_rejected_and_write_nothing() {
    let app = TestApp::start().await;
    let before = tokio::task::block_in_place(|| product_count(&app));
    let valid = r#""sku":"NEW-1","name":"New thing","price":1.50,"stock":1,"category_id":1"#;
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("{not json".into(), 400, None),
        ("".into(), 400, None),
        ("[]".into(), 422, None),
        (format!(r#"{{{valid},"colour":"red"}}"#), 422, Some("colour")),
        (r#"{"sku":"NEW-1","name":"x","price":-1,"stock":1,"category_id":1}"#.into(), 422, Some("price")),
        (r#"{"sku":"NEW-1","name":"x","price":"cheap","stock":1,"category_id":1}"#.into(), 422, Some("price")),
        (r#"{"sku":"NEW-1","name":"   ","price":1,"stock":1,"category_id":1}"#.into(), 422, Some("name")),
        (r#"{"sku":"NEW-1","name":"x","price":1,"stock":-2,"category_id":1}"#.into(), 422, Some("stock")),
        (r#"{"sku":"NEW-1","name":"x","price":1,"stock":1.5,"category_id":1}"#.into(), 422, Some("stock")),
        (r#"{"sku":"NEW-1","name":"x","price":1,"stock":1,"category_id":999}"#.into(), 422, Some("category_id")),
        (r#"{"name":"x","price":1,"stock":1,"category_id":1}"#.into(), 422, Some("sku")),
        (r#"{"sku":"ELE-0001","name":"x","price":1,"stock":1,"category_id":1}"#.into(), 409, Some("sku")),
        (r#"{"sku":"NEW-1","name":"nul\u0000name","price":1,"stock":1,"category_id":1}"#.into(), 422, Some("name")),
        (
            r#"{"sku":"NEW-1","name":"x","description":"\u0000","price":1,"category_id":1}"#.into(),
            422,
            Some("description"),
        ),
        (r#"{"sku":"NEW-1","name":"x","price":1e300,"stock":1,"category_id":1}"#.into(), 422, Some("price")),
        (r#"{"sku":"NEW-1","name":"x","price":1,"stock":99999999999,"category_id":1}"#.into(), 422, Some("stock")),
        (
            r#"{"sku":"NEW-1","name":"x","price":1,"stock":1,"category_id":99999999999}"#.into(),
            422,
            Some("category_id"),
        ),
    ];
    for (body, status, field) in &cases {
        let r = app.post("/api/products", body).await;
        let json = assert_error(&r, *status);
        if let Some(field) = field {
            assert_eq!(json["detail"]["field"], *field, "body {body}: {}", r.text);
        }
    }
    let updates: &[(&str, &str, u16)] = &[
        ("/api/products/1", "{}", 400),
        ("/api/products/1", r#"{"price":-3}"#, 422),
        ("/api/products/1", r#"{"name":""}"#, 422),
        ("/api/products/1", r#"{"stock":5,"id":9}"#, 422),
        ("/api/products/1", r#"{"category_id":12345}"#, 422),
        ("/api/products/1", r#"{"name":"a\u0000b"}"#, 422),
        ("/api/products/1", r#"{"description":"a\u0000b"}"#, 422),
        ("/api/products/2", r#"{"sku":"ELE-0001"}"#, 409),
        ("/api/products/999999", r#"{"stock":1}"#, 404),
        ("/api/products/abc", r#"{"stock":1}"#, 400),
    ];
    for (path, body, status) in updates {
        assert_error(&app.put(path, body).await, *status);
    }
    let after = tokio::task::block_in_place(|| product_count(&app));
    assert_eq!(before, after, "a rejected write changed the products table");
}

/// A plain `GET` of one product with a valid id is answered past the router (the hot path); a request only the
/// router can answer (an id to percent-decode, `?cache=`, `HEAD`) gets the same answer from the route's handler,
/// and both are recorded under the route.
#[tokio::test]
async fn one_product_is_answered_alike_past_the_router_and_through_it() {
    let app = TestApp::start().await;
    let first = app.get("/api/products/7").await;
    assert_eq!((first.status.as_u16(), first.x_cache()), (200, "MISS"), "{}", first.text);
    let direct = app.get("/api/products/7").await;
    assert_eq!(direct.x_cache(), "HIT");
    let names = |r: &common::Resp| {
        let mut n: Vec<String> = r.headers.keys().map(|k| k.as_str().to_owned()).collect();
        n.sort();
        n
    };
    for path in ["/api/products/%37", "/api/products/7?cache=on", "/api/products/+7", "/api/products/007"] {
        let routed = app.get(path).await;
        assert_eq!(routed.status, direct.status, "{path}: {}", routed.text);
        assert_eq!(names(&routed), names(&direct), "{path}");
        for header in ["content-type", "cache-control", "x-cache", "x-cache-level"] {
            assert_eq!(routed.header(header), direct.header(header), "{path}: {header}");
        }
        assert_eq!(data_text(&routed.text), data_text(&direct.text), "{path}");
        assert_eq!(routed.json["source"], direct.json["source"], "{path}");
    }
    // Ids the handler refuses are refused alike, however they are spelled.
    for (direct_form, routed_form) in
        [("/api/products/0", "/api/products/%30"), ("/api/products/x", "/api/products/%78")]
    {
        let a = app.get(direct_form).await;
        let b = app.get(routed_form).await;
        assert_eq!(assert_error(&a, 400), assert_error(&b, 400), "{direct_form} and {routed_form}");
    }
    let head = app.send(reqwest::Method::HEAD, "/api/products/7", None).await;
    assert_eq!((head.status.as_u16(), head.x_cache(), head.text.as_str()), (200, "HIT", ""));
    let hits =
        r#"http_request_duration_seconds_count{method="GET",route="/api/products/{id}",source="cache",status="200"}"#;
    assert_eq!(app.metric(hits).await, 5.0, "the direct hit and the four through the router");
    let head_hits =
        r#"http_request_duration_seconds_count{method="HEAD",route="/api/products/{id}",source="cache",status="200"}"#;
    assert_eq!(app.metric(head_hits).await, 1.0);
}
