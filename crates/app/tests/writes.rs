//! Writes whose client gives up or whose row is locked, and heavy work that must not starve the service.
//! A row lock is held from a second connection (psql) for a bounded time.

mod common;

use std::time::{Duration, Instant};

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
