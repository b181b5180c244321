//! What the app logs when Redis comes and goes: one line per change of state, not one per request. In a test
//! binary of its own: the log capture is per thread, and `tracing` decides once per call site whether anyone
//! listens, so tests running beside it in the same process could make it miss lines.

mod common;

use std::sync::Arc;

use cache_demo_testkit::{RedisOptions, RedisServer};
use common::{TestApp, eventually_hit, fresh_db, shared_pg};

/// Captures this test's log lines (current-thread runtime: the app's tasks log on this thread).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).matches(needle).count()
    }
}

#[tokio::test]
async fn redis_state_changes_are_logged_once_each() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut redis = RedisServer::start(RedisOptions::default()).expect("redis");
    let (db_url, _) = fresh_db(shared_pg().await).await;
    let app = TestApp::start_on(&db_url, &redis.url(), |c| c.redis_timeout_ms = 200).await;
    app.get("/api/products/1").await;
    redis.kill().expect("kill");
    for _ in 0..10 {
        assert_eq!(app.get("/api/products/1").await.status, 200);
    }
    redis.restart().expect("restart");
    assert!(eventually_hit(&app, "/api/products/1").await);
    assert_eq!(logs.count("redis unavailable"), 1, "one line for going down:\n{}", logs.text());
    assert_eq!(logs.count("redis available"), 2, "one line for the first connect, one for coming back");
}
