//! Throwaway PostgreSQL and Redis servers on random loopback ports, for cache-demo's
//! integration tests and for `make run` (the `cache-demo-stack` binary); Prometheus and
//! redis_exporter beside them for the observability tests and `make observe`.
//!
//! Everything here blocks (std::process); async tests call it from `spawn_blocking`.
//!
//! # Lifetimes of the server processes
//!
//! - A [`PgServer`] or [`RedisServer`] stops its server and removes its directory when dropped.
//! - Every server is forked by one process-wide thread that never exits, with
//!   `PR_SET_PDEATHSIG = SIGKILL`: when this process dies, however it dies, the kernel kills
//!   its servers. (The signal follows the *thread* that forked, which is why no caller thread,
//!   such as a short-lived test thread or a blocking-pool thread, is used for it.)
//! - The shared servers ([`shared_pg`], [`shared_redis`]) live in statics, which are never
//!   dropped: an `atexit` hook stops them and removes their directories when the process exits
//!   normally (the test harness finishing). If the process is killed instead, the kernel kills
//!   them and their directories stay behind: they are named `<kind>-<pid>-<random>` under
//!   [`base_dir`], and the first server started by a later process removes those whose pid is
//!   dead ([`remove_stale_dirs`]).

mod error;
mod exporter;
mod pg;
mod process;
mod prometheus;
mod redis;
mod workdir;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};

pub use error::Error;
pub use exporter::RedisExporter;
pub use pg::PgServer;
pub use process::die_with_parent;
pub use prometheus::{PrometheusOptions, PrometheusServer, ScrapeJob, http_get, promtool};
pub use redis::{RedisOptions, RedisServer};
pub use workdir::{base_dir, remove_stale_dirs};

/// The template database [`fresh_database`] clones, loaded from `init.sql` once per server.
pub const TEMPLATE_DB: &str = "cache_demo_template";

static SHARED_PG: OnceLock<Result<PgServer, String>> = OnceLock::new();
static SHARED_REDIS: OnceLock<Result<RedisServer, String>> = OnceLock::new();

/// The PostgreSQL server shared by all tests of one test binary, started on first use.
///
/// # Panics
/// If it cannot start; the message says why (tests only).
pub fn shared_pg() -> &'static PgServer {
    let pg = SHARED_PG.get_or_init(|| {
        stop_shared_servers_at_exit();
        PgServer::start().map_err(|e| e.to_string())
    });
    match pg {
        Ok(pg) => pg,
        Err(e) => panic!("cache-demo-testkit: cannot start the shared PostgreSQL server: {e}"),
    }
}

/// The Redis server (default [`RedisOptions`]) shared by all tests of one test binary,
/// started on first use.
///
/// # Panics
/// If it cannot start; the message says why (tests only).
pub fn shared_redis() -> &'static RedisServer {
    let redis = SHARED_REDIS.get_or_init(|| {
        stop_shared_servers_at_exit();
        RedisServer::start(RedisOptions::default()).map_err(|e| e.to_string())
    });
    match redis {
        Ok(redis) => redis,
        Err(e) => panic!("cache-demo-testkit: cannot start the shared Redis server: {e}"),
    }
}

/// Registers (once) an `atexit` hook that stops the shared servers and removes their
/// directories when the process exits normally, e.g. when the test harness finishes.
///
/// Statics are never dropped; without this, the shared servers would end by the parent-death
/// SIGKILL and leave their directories (and PostgreSQL's shared memory) for the next run to
/// clean up. That remains the fallback when the process is killed.
fn stop_shared_servers_at_exit() {
    static REGISTER: Once = Once::new();

    extern "C" fn stop_shared_servers() {
        // Unwinding out of an atexit hook would abort the process.
        let _ = std::panic::catch_unwind(|| {
            if let Some(Ok(redis)) = SHARED_REDIS.get() {
                redis.stop_at_exit();
            }
            if let Some(Ok(pg)) = SHARED_PG.get() {
                pg.stop_at_exit();
            }
        });
    }

    REGISTER.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` that never unwinds. A failure (no room
        // for more hooks) only loses the tidy shutdown.
        unsafe {
            nix::libc::atexit(stop_shared_servers);
        }
    });
}

/// Creates a fresh database with the repo's `init.sql` loaded and returns its URL.
///
/// It is cloned from [`TEMPLATE_DB`], which is loaded on the first call for each server (other
/// callers wait for that). Names are unique per call: `cache_demo_test_<pid>_<n>`.
pub fn fresh_database(pg: &PgServer) -> Result<String, Error> {
    fresh_database_with_template(pg, TEMPLATE_DB, &init_sql_path())
}

/// Like [`fresh_database`], but cloned from template database `template`, which is loaded
/// from `sql_file` on first use with this server. Use one template name per SQL file.
pub fn fresh_database_with_template(pg: &PgServer, template: &str, sql_file: &Path) -> Result<String, Error> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);

    pg.ensure_template(template, sql_file)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("cache_demo_test_{}_{n}", std::process::id());
    pg.create_database_from_template(&name, template)?;
    Ok(pg.url(&name))
}

/// The repository's Prometheus rules, `observability/prometheus/cache-demo.rules.yml` (found like
/// [`init_sql_path`]).
pub fn rules_path() -> PathBuf {
    workspace_root().join("observability/prometheus/cache-demo.rules.yml")
}

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest_dir.parent().and_then(Path::parent) {
        Some(root) => root.to_path_buf(),
        None => manifest_dir.join("../.."),
    }
}

/// The repo's `init.sql` at the workspace root (found from this crate's manifest directory at
/// compile time).
pub fn init_sql_path() -> PathBuf {
    workspace_root().join("init.sql")
}
