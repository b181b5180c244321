//! No stale read after a write: writers and readers race on the same products, and no read that starts after
//! a write was acknowledged may return the value from before that write.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::TestApp;

const PRODUCTS: [i32; 3] = [1, 2, 3];
const WRITES_PER_PRODUCT: i64 = 40;
const READERS: usize = 8;
const MAX_RUN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_never_leave_stale_reads() {
    // A slow database widens the window between a reader's query and its cache fill, where the race lives.
    let app = Arc::new(TestApp::start_with(|c| c.db_delay_ms = 15).await);
    race(vec![app]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_l1_and_write_through_never_serve_stale_reads() {
    let redis = common::shared_redis().await;
    let (db_url, _) = common::fresh_db(common::shared_pg().await).await;
    let prefix = common::unique_prefix();
    let tweak = |c: &mut cache_demo::Config| {
        c.cache_prefix = prefix.clone();
        c.db_delay_ms = 15;
        c.l1_enabled = true;
        c.l1_ttl_ms = 60_000;
        c.write_through = true;
    };
    let a = Arc::new(TestApp::start_on(&db_url, &redis.url(), tweak).await);
    let b = Arc::new(TestApp::start_on(&db_url, &redis.url(), tweak).await);
    a.wait_subscribed().await;
    b.wait_subscribed().await;
    race(vec![a.clone(), b.clone()]).await;
    let l1_hits = a.metric(r#"cache_l1_requests_total{result="hit"}"#).await
        + b.metric(r#"cache_l1_requests_total{result="hit"}"#).await;
    assert!(l1_hits > 0.0, "the race exercised L1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_lost_mid_race_never_leave_stale_reads() {
    // As if an LRU policy evicted the tokens again and again: lookups keep finding no token and
    // create one (the second round trip), and loads race writes all the same.
    let app = Arc::new(TestApp::start_with(|c| c.db_delay_ms = 15).await);
    let redis = common::shared_redis().await;
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let generations = app.key("generation:*");
    let stop = Arc::new(AtomicBool::new(false));
    let evictor = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut evicted = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let n: u32 = redis::cmd("EVAL")
                    .arg(common::DELETE_KEYS)
                    .arg(0)
                    .arg(&generations)
                    .query_async(&mut conn)
                    .await
                    .expect("EVAL");
                evicted += u32::from(n > 0);
                // Often enough to land inside many loads (15 ms each), not so often that no fill ever lands.
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            evicted
        }
    });
    race(vec![app.clone()]).await;
    stop.store(true, Ordering::SeqCst);
    let evicted = evictor.await.expect("evictor");
    assert!(evicted > 10, "tokens were removed while the race ran, {evicted} times");
}

/// Writers and readers spread over `apps` (replicas sharing PostgreSQL and Redis).
async fn race(apps: Vec<Arc<TestApp>>) {
    let app = apps[0].clone();
    let acked: Arc<HashMap<i32, AtomicI64>> = Arc::new(PRODUCTS.iter().map(|&id| (id, AtomicI64::new(-1))).collect());
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let mut writers = Vec::new();
    for (w, id) in PRODUCTS.into_iter().enumerate() {
        let (apps, acked) = (apps.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for version in 0..WRITES_PER_PRODUCT {
                if started.elapsed() > MAX_RUN {
                    break;
                }
                let app = &apps[(w + version as usize) % apps.len()];
                let r = app.put(&format!("/api/products/{id}"), &format!(r#"{{"stock": {version}}}"#)).await;
                assert_eq!(r.status, 200, "write: {}", r.text);
                acked[&id].store(version, Ordering::SeqCst);
                // Pauses between writes leave time for fills to land, so reads also hit.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
    }

    let mut readers = Vec::new();
    for n in 0..READERS {
        let (app, acked, done) = (apps[n % apps.len()].clone(), acked.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let (mut reads, mut hits, mut stale) = (0u32, 0u32, Vec::new());
            while !done.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN {
                let id = PRODUCTS[(n + reads as usize) % PRODUCTS.len()];
                let floor = acked[&id].load(Ordering::SeqCst);
                let r = app.get(&format!("/api/products/{id}")).await;
                assert_eq!(r.status, 200, "read: {}", r.text);
                let stock = r.json["data"]["stock"].as_i64().expect("stock");
                // Before the first write the seeded stock is served; after it, never less than the last ack.
                if floor >= 0 && stock < floor {
                    stale.push(format!(
                        "product {id}: read stock {stock} ({}) after write {floor} was acknowledged",
                        r.x_cache()
                    ));
                }
                reads += 1;
                hits += u32::from(r.x_cache() == "HIT");
            }
            (reads, hits, stale)
        }));
    }

    for w in writers {
        w.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    let (mut reads, mut hits, mut stale) = (0, 0, Vec::new());
    for r in readers {
        let (n, h, s) = r.await.expect("reader");
        reads += n;
        hits += h;
        stale.extend(s);
    }
    assert!(stale.is_empty(), "{} stale reads of {reads}:\n{}", stale.len(), stale.join("\n"));
    assert!(hits > 0 && hits < reads, "the race must exercise both hits and misses: {hits} hits of {reads}");

    // Once writes stop, every replica's caches and the database serve the last written value.
    for id in PRODUCTS {
        let last = acked[&id].load(Ordering::SeqCst);
        for replica in &apps {
            for _ in 0..2 {
                let r = replica.get(&format!("/api/products/{id}")).await;
                assert_eq!(r.json["data"]["stock"].as_i64(), Some(last), "product {id} ({})", r.x_cache());
            }
        }
        let direct = app.get(&format!("/api/products/{id}?cache=off")).await;
        assert_eq!(direct.json["data"]["stock"].as_i64(), Some(last));
    }
}
