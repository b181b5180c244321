//! The API behind the dashboard: comparison, load test, TTL, recent requests, and the page itself.

mod common;

use common::{TestApp, assert_error, shared_redis};
use serde_json::Value;

#[tokio::test]
async fn page_and_assets_are_served_from_the_binary() {
    let app = TestApp::start().await;
    let page = app.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.text.contains(r#"<script src="/assets/app.js"></script>"#));
    for loader in [r#"src="http"#, r#"href="http"#, "url(http", "@import"] {
        assert!(!page.text.contains(loader), "the page loads nothing external ({loader})");
    }
    for (path, kind) in [("/assets/app.js", "text/javascript"), ("/assets/style.css", "text/css")] {
        let r = app.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").starts_with(kind), "{path}");
        assert!(!r.text.contains("https://"), "{path} fetches nothing external");
    }
}

#[tokio::test]
async fn page_and_assets_forbid_inline_script_sniffing_and_framing() {
    let app = TestApp::start().await;
    for path in ["/", "/assets/app.js", "/assets/style.css"] {
        let r = app.get(path).await;
        let csp = r.header("content-security-policy");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(r.header("x-frame-options"), "DENY", "{path}");
    }
    let page = app.get("/").await.text;
    assert!(!page.contains("<script>") && !page.contains("style=\""), "no inline script or style");
    let handler = page.split(['<', ' ']).find(|w| w.starts_with("on") && w.contains('='));
    assert_eq!(handler, None, "no inline event handlers");
}

#[tokio::test]
async fn compare_times_both_paths_and_reports_the_outcome() {
    let app = TestApp::start().await;
    let first = app.get("/api/compare?endpoint=top").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["database"]["x_cache"], "BYPASS");
    assert_eq!(first.json["cache"]["x_cache"], "MISS");
    assert_eq!(first.json["key"], app.key("products:top:10"));
    assert_eq!(first.json["path"], "/api/top-products?limit=10");
    assert!(first.json["speedup"].is_null(), "a miss is no speedup: {}", first.text);
    let second = app.get("/api/compare?endpoint=top").await;
    assert_eq!(second.json["cache"]["x_cache"], "HIT");
    let firsts = [&first, &second].map(|r| r.json["first"].as_str().unwrap_or_default().to_owned());
    assert!(firsts[0] != firsts[1] && firsts.iter().all(|f| f == "cache" || f == "database"), "in turns: {firsts:?}");
    assert_eq!(second.json["cache"]["source"], "cache");
    let (db, cache) = (second.json["database"]["ms"].as_f64(), second.json["cache"]["ms"].as_f64());
    assert!(db > Some(0.0) && cache > Some(0.0), "{}", second.text);
    let speedup = second.json["speedup"].as_f64().expect("speedup");
    assert!((speedup - db.unwrap_or_default() / cache.unwrap_or(1.0)).abs() < 1e-6, "speedup is db / cache");
    // The comparison goes through the real cache: the stats count it.
    let stats = app.get("/api/stats").await;
    assert_eq!((stats.json["hits"].as_u64(), stats.json["misses"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats.json["bypasses"], 2);
}

#[tokio::test]
async fn compare_reports_the_artificial_delay() {
    let app = TestApp::start_with(|c| c.db_delay_ms = 40).await;
    let r = app.get("/api/compare?endpoint=product&id=3").await;
    assert_eq!(r.json["db_delay_ms"], 40);
    assert!(r.json["database"]["ms"].as_f64() >= Some(40.0), "{}", r.text);
}

#[tokio::test]
async fn load_test_runs_the_requested_rounds() {
    let app = TestApp::start().await;
    let r = app.post("/api/load-test", r#"{"endpoint":"search","q":"Yoga","rounds":12}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["completed_rounds"], 12);
    assert_eq!(r.json["truncated"], false);
    assert_eq!(r.json["path"], "/api/products?q=yoga&limit=20");
    let rounds = r.json["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 12);
    let outcomes: Vec<&str> = rounds.iter().filter_map(|x| x["cache_x_cache"].as_str()).collect();
    assert_eq!(outcomes[0], "MISS");
    assert!(outcomes[1..].iter().all(|o| *o == "HIT"), "{outcomes:?}");
    assert!(rounds.iter().all(|x| x["database_ms"].as_f64() > Some(0.0) && x["cache_ms"].as_f64() > Some(0.0)));
    for path in ["database", "cache"] {
        let s = &r.json["summary"][path];
        let (p50, p95, max) = (s["p50"].as_f64(), s["p95"].as_f64(), s["max"].as_f64());
        assert!(p50 <= p95 && p95 <= max, "{path}: {s}");
    }
    let max_db = rounds.iter().filter_map(|x| x["database_ms"].as_f64()).fold(0.0, f64::max);
    assert_eq!(r.json["summary"]["database"]["max"].as_f64(), Some(max_db));
}

#[tokio::test]
async fn load_test_and_compare_reject_bad_input() {
    let app = TestApp::start().await;
    for body in [
        r#"{"endpoint":"users","rounds":5}"#,
        r#"{"endpoint":"top","rounds":0}"#,
        r#"{"endpoint":"top","rounds":1001}"#,
        r#"{"endpoint":"product","rounds":5}"#,
        r#"{"endpoint":"product","id":0,"rounds":5}"#,
        r#"{"endpoint":"top","limit":500}"#,
        "not json",
    ] {
        assert_error(&app.post("/api/load-test", body).await, 400);
    }
    assert_error(&app.post("/api/load-test", r#"{"endpoint":"top","rounds":-1}"#).await, 422);
    assert_error(&app.post("/api/load-test", r#"{"endpoint":"top","colour":1}"#).await, 422);
    assert_error(&app.post("/api/load-test", r#"{"endpoint":"product","id":999999,"rounds":2}"#).await, 404);
    for path in [
        "/api/compare",
        "/api/compare?endpoint=nope",
        "/api/compare?endpoint=product&id=abc",
        "/api/compare?endpoint=categories&id=1",
        "/api/ttl?endpoint=",
        "/api/ttl?endpoint=top&limit=0",
    ] {
        assert_error(&app.get(path).await, 400);
    }
    let empty_search = app.get("/api/ttl?endpoint=search&q=").await;
    assert_eq!(empty_search.status, 200, "an empty search lists products: {}", empty_search.text);
    assert_eq!(empty_search.json["key"], app.key("products:list:20"));
}

#[tokio::test]
async fn ttl_follows_the_key_in_redis() {
    let app = TestApp::start().await;
    let absent = app.get("/api/ttl?endpoint=product&id=2").await;
    assert_eq!(absent.json["exists"], false);
    assert!(absent.json["ttl_secs"].is_null());
    assert_eq!(absent.json["key"], app.key("product:2"));
    app.get("/api/products/2").await;
    let present = app.get("/api/ttl?endpoint=product&id=2").await;
    assert_eq!(present.json["exists"], true);
    let ttl = present.json["ttl_secs"].as_i64().expect("ttl");
    assert!((1..=66).contains(&ttl), "{ttl}: 60 s ± 10% jitter");
    assert_eq!(present.json["configured_ttl_secs"], 60);
    shared_redis().await.cli(&["EXPIRE", &app.key("product:2"), "5"]).expect("expire");
    let shortened = app.get("/api/ttl?endpoint=product&id=2").await;
    assert!(shortened.json["ttl_secs"].as_i64() <= Some(5), "reads Redis, not a local guess");
}

#[tokio::test]
async fn recent_lists_the_last_api_requests_newest_first() {
    let app = TestApp::start().await;
    app.get("/api/products/4").await;
    app.get("/api/products/4").await;
    app.get("/api/products/4?cache=off").await;
    app.get("/api/stats").await;
    app.get("/healthz").await;
    app.get("/api/products/nope").await;
    let r = app.get("/api/recent").await;
    let list = r.json["requests"].as_array().expect("requests");
    let seen: Vec<(String, Value, u64)> = list
        .iter()
        .map(|x| {
            (x["path"].as_str().unwrap_or_default().to_owned(), x["cache"].clone(), x["status"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/api/products/nope".to_owned(), Value::Null, 400),
            ("/api/products/4?cache=off".to_owned(), Value::from("BYPASS"), 200),
            ("/api/products/4".to_owned(), Value::from("HIT"), 200),
            ("/api/products/4".to_owned(), Value::from("MISS"), 200),
        ]
    );
    assert!(list.iter().all(|x| x["ms"].as_f64() > Some(0.0)));
    for _ in 0..30 {
        app.get("/api/categories").await;
    }
    assert_eq!(app.get("/api/recent").await.json["requests"].as_array().map(Vec::len), Some(20));
}
