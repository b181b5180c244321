//! redis_exporter (Debian's `prometheus-redis-exporter`) in front of a [`RedisServer`], as an owned child
//! process: Redis' own metrics (memory, maxmemory, evictions, keys) for a [`PrometheusServer`](crate::PrometheusServer)
//! to scrape.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{self, LogFile};
use crate::prometheus::{Ready, launch_http_server};
use crate::{Error, RedisServer};

const SERVER: &str = "redis_exporter";
/// The Debian package's name for redis_exporter.
const PROGRAM: &str = "prometheus-redis-exporter";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running redis_exporter on `127.0.0.1:<port>` that reads one Redis server, owned by this value.
///
/// It connects to Redis on every scrape: `redis_up` is 0 while Redis does not answer. Dropping it stops the
/// exporter and removes its directory (its log).
#[derive(Debug)]
pub struct RedisExporter {
    log: LogFile,
    port: u16,
    child: Mutex<Option<Child>>,
    dir: TempDir,
}

impl RedisExporter {
    /// Starts `prometheus-redis-exporter -redis.addr <redis URL> -web.listen-address 127.0.0.1:<free port>`
    /// and waits (at most 15 s) until its `/metrics` answers.
    pub fn start(redis: &RedisServer) -> Result<RedisExporter, Error> {
        let dir = crate::workdir::create("exporter", None)?;
        let log = LogFile { path: dir.path().join("redis_exporter.log") };
        let mut exporter = RedisExporter { log, port: 0, child: Mutex::new(None), dir };
        // The testkit's TLS URLs end in `#insecure` (a self-signed certificate): the exporter takes a flag instead.
        let url = redis.url();
        let (redis_url, insecure) = match url.strip_suffix("#insecure") {
            Some(url) => (url.to_owned(), true),
            None => (url, false),
        };
        process::launch_on_free_port(|port| {
            exporter.port = port;
            exporter.launch(&redis_url, insecure)
        })?;
        Ok(exporter)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the scrape target.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file the exporter's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log.path
    }

    /// The exporter's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        process::running_pid(&self.child)
    }

    /// Stops the exporter (SIGTERM, SIGKILL after 5 s). Does nothing when it is not running.
    pub fn stop(&mut self) -> Result<(), Error> {
        process::stop_server(SERVER, &mut self.child, Signal::SIGTERM, STOP_GRACE)
    }

    fn launch(&mut self, redis_url: &str, skip_tls_verification: bool) -> Result<(), Error> {
        let mut cmd = Command::new(PROGRAM);
        // The password (if any) is in the URL; the URL goes through the environment so `ps` does not show it.
        cmd.env("REDIS_ADDR", redis_url)
            .arg(format!("-web.listen-address=127.0.0.1:{}", self.port))
            // Redis' metrics only, not the exporter's Go runtime.
            .arg("-redis-only-metrics")
            .arg(format!("-skip-tls-verification={skip_tls_verification}"));
        let ready = Ready { port: self.port, path: "/metrics", timeout: READY_TIMEOUT };
        launch_http_server(SERVER, cmd, self.dir.path(), &self.log, ready, &mut self.child)
    }
}

impl Drop for RedisExporter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
