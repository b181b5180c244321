//! Hostile traffic from anyone who can reach the port: what it may cost, and that it leaves no state behind
//! that grows with the number of distinct requests.

mod common;

use common::{TestApp, assert_error, shared_redis};

#[tokio::test]
async fn made_up_methods_share_one_metric_series() {
    let app = TestApp::start().await;
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).expect("method");
        let r = app.send(method, "/api/products/1", None).await;
        assert_eq!(r.status.as_u16(), 405, "{}", r.text);
    }
    let metrics = app.get("/metrics").await.text;
    assert!(!metrics.contains("MADEUP"), "a made-up method became a label");
    let series = metrics.lines().filter(|l| l.starts_with("http_request_duration_seconds_count")).count();
    assert!(series < 10, "{series} series after 40 made-up methods");
    assert!(metrics.contains(r#"method="other""#));
    let recent = app.get("/api/recent").await;
    assert!(!recent.text.contains("MADEUP"), "{}", recent.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_missing_products_leave_no_generations_behind() {
    let app = TestApp::start().await;
    let redis = shared_redis().await;
    let generations = app.key("generations");
    app.get("/api/products/1").await;
    let hlen = || tokio::task::block_in_place(|| redis.cli(&["HLEN", &generations]).expect("HLEN"));
    let before: u64 = hlen().parse().expect("count");
    for id in 0..300 {
        assert_error(&app.get(&format!("/api/products/{}", 900_000 + id)).await, 404);
    }
    // The removals are queued behind the requests on the same connection: one more round trip flushes them.
    app.get("/api/products/1").await;
    let after: u64 = hlen().parse().expect("count");
    assert_eq!(after, before, "300 made-up ids added fields to {generations}");
    let keys = tokio::task::block_in_place(|| redis.cli(&["--scan", "--pattern", &format!("{}:*", app.prefix)]))
        .expect("scan");
    for key in keys.lines() {
        let ttl = tokio::task::block_in_place(|| redis.cli(&["TTL", key])).expect("TTL");
        assert!(key == generations || ttl != "-1", "{key} has no TTL");
    }
}
