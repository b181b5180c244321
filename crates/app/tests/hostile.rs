//! Hostile traffic from anyone who can reach the port: what it may cost, and that it leaves no state behind
//! that grows with the number of distinct requests.

mod common;

use std::time::{Duration, Instant};

use cache_demo_testkit::{RedisOptions, RedisServer};
use common::{TestApp, assert_error, shared_redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let generations = app.key("generation:*");
    app.get("/api/products/1").await;
    let tokens = || tokio::task::block_in_place(|| common::count_keys(redis, &generations));
    let before = tokens();
    assert_eq!(before, 1, "product 1's token");
    for id in 0..300 {
        assert_error(&app.get(&format!("/api/products/{}", 900_000 + id)).await, 404);
    }
    // The removals are queued behind the requests on the same connection: one more round trip flushes them.
    app.get("/api/products/1").await;
    let after = tokens();
    assert_eq!(after, before, "300 made-up ids added tokens ({generations})");
    let keys = tokio::task::block_in_place(|| redis.cli(&["--scan", "--pattern", &format!("{}:*", app.prefix)]))
        .expect("scan");
    for key in keys.lines() {
        let ttl = tokio::task::block_in_place(|| redis.cli(&["TTL", key])).expect("TTL");
        let token = key.starts_with(&app.key("generation:"));
        assert!(token || ttl != "-1", "{key} has no TTL");
    }
}

/// Reads until the server closes the connection (or `limit` passes); true when it closed.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect")
}

#[tokio::test]
async fn a_client_sending_headers_byte_by_byte_is_disconnected() {
    let app = TestApp::start_with(|c| c.http_header_read_timeout_ms = 500).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    let request =
        b"GET /api/products/1 HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for byte in request {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(closed || closed_within(&mut stream, Duration::from_secs(3)).await, "the slow client is still connected");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::start_with(|c| c.http_header_read_timeout_ms = 500).await;
    let mut stream = connect(&app).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "served first");
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await, "the idle connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_half_open_requests_do_not_stop_others() {
    let app = TestApp::start_with(|c| c.http_header_read_timeout_ms = 1_000).await;
    let mut half_open = Vec::new();
    for _ in 0..300 {
        let mut s = connect(&app).await;
        s.write_all(b"GET /api/products/1 HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        half_open.push(s);
    }
    let started = Instant::now();
    let r = app.get("/api/products/2").await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "served after {:?}", started.elapsed());
    let mut closed = 0;
    for s in &mut half_open {
        if closed_within(s, Duration::from_secs(3)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 300, "every half-open request is closed by the header timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = TestApp::start_with(|c| {
        c.http_max_connections = 3;
        c.http_header_read_timeout_ms = 800;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    // The held connections send nothing; the next request is served once the header timeout frees a slot.
    let started = Instant::now();
    let r = app.get("/healthz").await;
    assert_eq!(r.status, 200);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "served at once ({waited:?}): the cap did not hold");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
}

/// 200,000 keys under the app's prefix, made by one Lua loop in Redis (bounded: a few hundred ms).
fn fill_keyspace(redis: &RedisServer, prefix: &str) {
    let script = "for i = 1, 200000 do redis.call('SET', ARGV[1] .. ':filler:' .. i, 'x', 'EX', 600) end return 1";
    redis.cli(&["EVAL", script, "0", prefix]).expect("fill");
    let size = redis.cli(&["DBSIZE"]).expect("dbsize").parse::<u64>().ok();
    assert!(size >= Some(200_000), "{size:?} keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_writes_do_not_scan_a_large_keyspace() {
    let (app, redis) = TestApp::start_on_own_redis(RedisOptions::default(), |_| {}).await;
    tokio::task::block_in_place(|| fill_keyspace(&redis, &app.prefix));
    app.get("/api/categories").await;
    app.get("/api/top-products").await;
    // Generous bounds: with a SCAN of the keyspace these took ~20 s each.
    let bound = Duration::from_millis(1_000);
    let started = Instant::now();
    let stats = app.get("/api/stats").await;
    assert_eq!(stats.status, 200);
    assert!(started.elapsed() < bound, "/api/stats took {:?}", started.elapsed());
    let started = Instant::now();
    let w = app.put("/api/products/1", r#"{"stock": 321}"#).await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert!(started.elapsed() < bound, "PUT took {:?}", started.elapsed());
    let removed: Vec<&str> =
        w.json["invalidated"]["keys"].as_array().expect("keys").iter().filter_map(|k| k.as_str()).collect();
    assert!(removed.contains(&"categories:stats") && removed.contains(&"products:top:10"), "{removed:?}");
    assert_eq!(app.get("/api/categories").await.x_cache(), "MISS", "the catalogue was invalidated");
    // The background count catches up (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut keys = None;
    while Instant::now() < deadline {
        keys = app.get("/api/stats").await.json["keys"].as_u64();
        if keys.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(keys >= Some(200_000), "{keys:?}");
}
