//! The app with exactly the rights it gets on Kubernetes (`least-privilege/`): PostgreSQL role
//! `cache_demo_app` and Redis ACL user `cache-demo`, on real servers. Everything a user does works (reads,
//! hits, writes with their invalidation, flush, warm, stats, admin keys, invalidations between replicas), and
//! what the rights do not cover is refused.

mod common;

use cache_demo_testkit::{RedisOptions, RedisServer};
use common::{TestApp, fresh_db, psql, shared_pg};

const ROLE_SQL: &str = include_str!("../../../least-privilege/app-role.sql");
const ACL: &str = include_str!("../../../least-privilege/redis-acl.txt");
const PASSWORD: &str = "app0password1";

#[tokio::test]
async fn the_app_works_with_its_least_rights_and_nothing_more() {
    let pg = shared_pg().await;
    let (admin_url, db) = fresh_db(pg).await;
    psql(pg, &db, &ROLE_SQL.replace(":'app_password'", &format!("'{PASSWORD}'")));
    let app_db_url = admin_url.replacen("postgres://postgres@", &format!("postgres://cache_demo_app:{PASSWORD}@"), 1);
    assert_ne!(app_db_url, admin_url, "the admin URL has an unexpected form: {admin_url}");

    let redis = tokio::task::spawn_blocking(|| RedisServer::start(RedisOptions::default()))
        .await
        .unwrap()
        .expect("start Redis");
    let mut setuser = vec!["ACL", "SETUSER", "cache-demo", "reset", "on"];
    let password = format!(">{PASSWORD}");
    setuser.push(&password);
    setuser.extend(ACL.split_whitespace());
    assert_eq!(redis.cli(&setuser).unwrap().trim(), "OK");
    let redis_url = format!("redis://cache-demo:{PASSWORD}@127.0.0.1:{}/", redis.port());

    let app = TestApp::start_on(&app_db_url, &redis_url, |c| {
        c.cache_prefix = "cache-demo".into();
        c.admin_token = None;
    })
    .await;
    let second = TestApp::start_on(&app_db_url, &redis_url, |c| {
        c.cache_prefix = "cache-demo".into();
        c.admin_token = None;
        c.l1_enabled = true;
    })
    .await;
    second.wait_subscribed().await;

    for path in ["/api/categories", "/api/products?q=noise", "/api/top-products", "/api/products/1"] {
        let miss = app.get(path).await;
        assert_eq!((miss.status.as_u16(), miss.x_cache()), (200, "MISS"), "{path}: {}", miss.text);
        assert_eq!(miss.header("x-cache-error"), "", "{path}");
        let hit = app.get(path).await;
        assert_eq!(hit.x_cache(), "HIT", "{path}: {}", hit.text);
    }
    // A made-up id: the lookup's claim creates a token, the 404 removes it again (FORGET), both under the ACL.
    let tokens = common::count_keys(&redis, "cache-demo:generation:*");
    assert_eq!(app.get("/api/products/999999").await.status.as_u16(), 404);
    app.get("/api/products/1").await;
    assert_eq!(common::count_keys(&redis, "cache-demo:generation:*"), tokens, "the made-up id's token is gone");
    let update = app.put("/api/products/1", r#"{"price": 12.5}"#).await;
    assert_eq!(update.status.as_u16(), 200, "{}", update.text);
    assert_eq!(update.json["invalidated"]["complete"], true, "{}", update.text);
    assert_eq!(
        update.json["invalidated"]["replicas"]["acknowledged"], 2,
        "the other replica heard it: {}",
        update.text
    );
    let after = app.get("/api/products/1").await;
    assert_eq!((after.x_cache(), after.json["data"]["price"].as_f64()), ("MISS", Some(12.5)), "{}", after.text);
    let created =
        app.post("/api/products", r#"{"sku": "LP-1", "name": "Least", "price": 1.0, "category_id": 1}"#).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    let id = created.json["product"]["id"].as_i64().expect("an id");
    let deleted = app.delete(&format!("/api/products/{id}")).await;
    assert_eq!(deleted.status.as_u16(), 200, "{}", deleted.text);
    let stats = app.get("/api/stats").await;
    assert!(stats.json["keys"].as_u64().is_some_and(|k| k > 0), "{}", stats.text);
    assert!(stats.json["redis"]["used_memory"].as_u64().is_some(), "{}", stats.text);
    assert_eq!(app.get("/admin/cache/keys?pattern=*").await.status.as_u16(), 200);
    assert_eq!(app.post("/api/warm", "{}").await.status.as_u16(), 200);
    assert_eq!(app.post("/api/flush-cache", "{}").await.status.as_u16(), 200);
    assert_eq!(app.get("/readyz").await.status.as_u16(), 200);

    // The dashboard's experiments and the exchange between replicas, with the same rights.
    let lab = |r: common::Resp| {
        assert!(r.status.is_success(), "{}", r.text);
        r.json
    };
    lab(app.post("/api/labs/stampede", r#"{"requests": 5, "single_flight": true}"#).await);
    lab(app.post("/api/labs/staleness/naive-write", r#"{"id": 2, "price": 3.5}"#).await);
    assert_eq!(lab(app.get("/api/labs/staleness?id=2").await)["database_price"], 3.5);
    lab(app.put("/api/labs/db-delay", r#"{"ms": 0}"#).await);
    lab(app.post("/api/labs/eviction/shrink", r#"{"headroom": 1048576}"#).await);
    assert_eq!(lab(app.post("/api/labs/eviction/restore", "").await)["shrunk"], false);
    lab(app.post("/api/labs/traffic", r#"{"pattern": "hot", "seconds": 1}"#).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = app.get("/api/stats").await.json;
        if stats["fleet"]["aggregated"] == true && stats["fleet"]["replicas"].as_array().is_some_and(|r| r.len() == 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the replicas never exchanged their figures: {stats}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // What the rights do not cover.
    let as_app = |args: &[&str]| {
        let mut full = vec!["--user", "cache-demo", "--pass", PASSWORD];
        full.extend_from_slice(args);
        redis.cli(&full).unwrap_or_else(|e| e.to_string())
    };
    assert!(as_app(&["SET", "other:key", "x"]).contains("NOPERM"), "a key outside the prefix");
    assert!(as_app(&["FLUSHALL"]).contains("NOPERM"), "FLUSHALL");
    assert!(as_app(&["CONFIG", "REWRITE"]).contains("NOPERM"), "CONFIG REWRITE");
    assert!(as_app(&["CONFIG", "SET", "dir", "/tmp"]).contains("protected config"), "a protected setting");
    let denied = pg.psql(&db, "SET ROLE cache_demo_app; DELETE FROM reviews WHERE id = 1");
    assert!(format!("{denied:?}").contains("permission denied"), "{denied:?}");
    let denied = pg.psql(&db, "SET ROLE cache_demo_app; CREATE TABLE t (x int)");
    assert!(format!("{denied:?}").contains("permission denied"), "{denied:?}");
}
