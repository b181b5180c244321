//! Talking to the app outside the load: its counters (`/api/stats`), its metrics (`/metrics`), flush and
//! readiness; and starting it as a child process for `make bench`.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cache_demo_api::Stats;
use http::Method;
use serde::Serialize;
use serde_json::Value;

use crate::client::Target;
use crate::summary::{Counters, counter_delta};

const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The app's in-process L1 cache, as `/api/stats` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum L1State {
    /// `/api/stats` has no `l1` field: this build has no L1 cache.
    Absent,
    /// Built in, but switched off (`L1_ENABLED=false`), or on but not serving (`active: false`).
    Off,
    On,
}

impl L1State {
    /// `l1` missing: absent; `null` or `{"enabled": false}` or `{"active": false}`: off; any other object: on.
    pub fn from_stats(stats: &Stats) -> L1State {
        match &stats.l1 {
            None => L1State::Absent,
            Some(None) => L1State::Off,
            Some(Some(l1)) => {
                if l1.enabled && l1.active {
                    L1State::On
                } else {
                    L1State::Off
                }
            }
        }
    }
}

/// The caching patterns switched on, from `/api/stats` `patterns` (`single_flight, ttl_jitter_pct=10`).
pub fn patterns(stats: &Stats) -> Option<String> {
    let on = stats.patterns.as_ref()?.switched_on();
    Some(if on.is_empty() { "none".to_owned() } else { on.join(", ") })
}

/// What the app says about itself at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub counters: Counters,
    /// Sum of `db_query_duration_seconds_count` over every `query`: queries PostgreSQL has run.
    pub db_queries: Option<f64>,
    pub evicted_keys: Option<u64>,
    pub rss_bytes: Option<f64>,
    /// CPU time the app process has used (only for an app the bench started: `/proc/<pid>/stat`; the
    /// app's `process_cpu_seconds_total` counts whole seconds, too coarse for runs of a few seconds).
    pub cpu_seconds: Option<f64>,
    pub stats: Stats,
}

/// What changed in the app between two snapshots; a run made of several slices adds up the slices' deltas.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Delta {
    pub counters: Counters,
    /// `None` when a snapshot could not read it.
    pub db_queries: Option<f64>,
    pub evicted_keys: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// The server's context switches (only where the bench reads them around a run).
    pub switches: Option<ContextSwitches>,
    /// CPU time of the bench process itself, the load generator, over the run (same).
    pub load_cpu_seconds: Option<f64>,
    /// CPU time of the Redis server over the run, when it runs on this machine (same).
    pub redis_cpu_seconds: Option<f64>,
}

impl Delta {
    pub fn between(before: &Snapshot, after: &Snapshot) -> Delta {
        Delta {
            counters: after.counters.since(before.counters),
            db_queries: before.db_queries.zip(after.db_queries).map(|(b, a)| counter_delta(b, a)),
            evicted_keys: before.evicted_keys.zip(after.evicted_keys).map(|(b, a)| a.saturating_sub(b)),
            cpu_seconds: before.cpu_seconds.zip(after.cpu_seconds).map(|(b, a)| counter_delta(b, a)),
            switches: None,
            load_cpu_seconds: None,
            redis_cpu_seconds: None,
        }
    }

    /// The sum of two deltas; a figure missing from either is missing from the sum.
    pub fn plus(self, other: Delta) -> Delta {
        Delta {
            counters: Counters {
                hits: self.counters.hits + other.counters.hits,
                misses: self.counters.misses + other.counters.misses,
                errors: self.counters.errors + other.counters.errors,
                bypasses: self.counters.bypasses + other.counters.bypasses,
            },
            db_queries: self.db_queries.zip(other.db_queries).map(|(a, b)| a + b),
            evicted_keys: self.evicted_keys.zip(other.evicted_keys).map(|(a, b)| a + b),
            cpu_seconds: self.cpu_seconds.zip(other.cpu_seconds).map(|(a, b)| a + b),
            switches: self.switches.zip(other.switches).map(|(a, b)| a.plus(b)),
            load_cpu_seconds: self.load_cpu_seconds.zip(other.load_cpu_seconds).map(|(a, b)| a + b),
            redis_cpu_seconds: self.redis_cpu_seconds.zip(other.redis_cpu_seconds).map(|(a, b)| a + b),
        }
    }
}

/// How often a process's threads left the CPU: `voluntary` when one had nothing to do and waited (for a
/// request, a reply, a lock), `involuntary` when the scheduler took the core from it for another thread.
/// Summed over the threads of `/proc/<pid>/task/*/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextSwitches {
    pub voluntary: u64,
    pub involuntary: u64,
}

impl ContextSwitches {
    /// The switches of every thread of process `pid` until now.
    pub fn of(pid: u32) -> Option<ContextSwitches> {
        let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
        let mut sum = ContextSwitches::default();
        for task in process.tasks().ok()?.flatten() {
            // A thread that ends between the listing and the read is skipped: its switches are few.
            let Ok(status) = task.status() else { continue };
            sum.voluntary += status.voluntary_ctxt_switches?;
            sum.involuntary += status.nonvoluntary_ctxt_switches?;
        }
        Some(sum)
    }

    /// What happened from `before` to `self`.
    pub fn since(self, before: ContextSwitches) -> ContextSwitches {
        ContextSwitches {
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }

    pub fn plus(self, other: ContextSwitches) -> ContextSwitches {
        ContextSwitches {
            voluntary: self.voluntary + other.voluntary,
            involuntary: self.involuntary + other.involuntary,
        }
    }
}

/// Sum of a metric's samples over all label sets, from the Prometheus text format.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        // `name{labels} value` or `name value`, not `name_other ...`.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        // The value is the first field after the labels (a timestamp may follow).
        let after_labels = match rest.rfind('}') {
            Some(i) => &rest[i + 1..],
            None => rest,
        };
        if let Some(v) = after_labels.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat`.
pub(crate) fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some(cpu_seconds(&stat))
}

/// `utime` + `stime` of a `/proc/<pid>/stat` line (parsed by `procfs`), in seconds.
#[cfg(test)]
fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    use procfs::FromRead;
    Some(cpu_seconds(&procfs::process::Stat::from_read(stat.as_bytes()).ok()?))
}

fn cpu_seconds(stat: &procfs::process::Stat) -> f64 {
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

fn counters_from_stats(stats: &Stats) -> Counters {
    let c = &stats.counters;
    Counters { hits: c.hits, misses: c.misses, errors: c.errors, bypasses: c.bypasses }
}

/// The app at `target`, for control calls.
#[derive(Debug, Clone)]
pub struct AppClient {
    pub target: Target,
    /// `ADMIN_TOKEN` of the app, sent with the flush when set.
    pub admin_token: Option<String>,
    /// Process id of the app, when it runs on this machine (its CPU time is read from `/proc`).
    pub pid: Option<u32>,
}

impl AppClient {
    pub fn new(target: Target) -> Self {
        AppClient { target, admin_token: None, pid: None }
    }

    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let reply = self.target.request(Method::GET, &self.target.path(path), None, CONTROL_TIMEOUT).await?;
        if !reply.is_success() {
            bail!("GET {path}: HTTP {}", reply.status);
        }
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let text = self.get("/api/stats").await?;
        serde_json::from_str(&text).context("GET /api/stats: not the stats JSON")
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        self.get("/metrics").await
    }

    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let stats = self.stats().await?;
        let metrics = self.metrics().await?;
        Ok(Snapshot {
            counters: counters_from_stats(&stats),
            db_queries: metric_sum(&metrics, "db_query_duration_seconds_count"),
            evicted_keys: stats.redis.info.evicted_keys,
            rss_bytes: metric_sum(&metrics, "process_resident_memory_bytes"),
            cpu_seconds: self.pid.and_then(process_cpu_seconds),
            stats,
        })
    }

    /// Deletes the app's keys and resets its counters.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let path = self.target.path("/api/flush-cache");
        let auth = self.admin_token.as_deref().filter(|t| !t.is_empty()).map(|t| format!("Bearer {t}"));
        let reply = self.target.request_with(Method::POST, &path, auth.as_deref(), CONTROL_TIMEOUT).await?;
        if reply.status == 401 {
            bail!("POST /api/flush-cache: HTTP 401: the app has an ADMIN_TOKEN; pass it with --admin-token");
        }
        if !reply.is_success() {
            bail!("POST /api/flush-cache: HTTP {} {}", reply.status, String::from_utf8_lossy(&reply.body));
        }
        Ok(())
    }

    /// Waits (at most `within`) until `/readyz` answers 200, and then (briefly) until it reports Redis up.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        let path = self.target.path("/readyz");
        let mut last = String::from("no answer");
        while Instant::now() < until {
            match self.target.request(Method::GET, &path, None, Duration::from_secs(2)).await {
                Ok(r) if r.is_success() => {
                    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    if body.pointer("/redis/up").and_then(Value::as_bool) != Some(false) {
                        return Ok(());
                    }
                    last = "Redis not up yet".into();
                }
                Ok(r) => last = format!("HTTP {}", r.status),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} not ready within {within:?}: {last}", self.target.url)
    }
}

/// The app as a child process of the bench (`--spawn-app`).
pub struct SpawnedApp {
    child: tokio::process::Child,
    pub addr: SocketAddr,
}

impl SpawnedApp {
    /// Starts `binary` on a free loopback port with `env` added to the inherited environment (DATABASE_URL and
    /// REDIS_URL come from `cache-demo-stack`); logs as JSON at `warn` to `log` (appended).
    pub fn start(binary: &Path, env: &[(&str, &str)], log: &Path) -> anyhow::Result<SpawnedApp> {
        SpawnedApp::start_with_args(binary, &[], env, log)
    }

    /// [`SpawnedApp::start`] with command-line arguments.
    pub fn start_with_args(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<SpawnedApp> {
        let addr = free_loopback_addr()?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening the app log {}", log.display()))?;
        let err = file.try_clone().context("opening the app log")?;
        let mut cmd = std::process::Command::new(binary);
        cmd.args(args)
            .env("LISTEN_ADDR", addr.to_string())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        // SIGKILLed with us if we die; in its own process group so a terminal's Ctrl-C reaches only us.
        cache_demo_testkit::die_with_parent(&mut cmd);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        Ok(SpawnedApp { child, addr })
    }

    /// SIGTERM, then SIGKILL if it has not exited within a few seconds.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(status)` if the app has exited already.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// A port nobody listens on right now (the OS picks it; the app binds it a moment later).
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    listener.local_addr().context("finding a free loopback port")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `/api/stats` as the bench reads it.
    fn stats(body: Value) -> Stats {
        serde_json::from_value(body).expect("stats JSON")
    }

    const METRICS: &str = "\
# HELP db_query_duration_seconds PostgreSQL query duration
# TYPE db_query_duration_seconds histogram
db_query_duration_seconds_bucket{query=\"product\",le=\"0.001\"} 10
db_query_duration_seconds_sum{query=\"product\"} 0.5
db_query_duration_seconds_count{query=\"product\"} 120
db_query_duration_seconds_count{query=\"category_stats\"} 30
db_query_duration_seconds_count_extra 999
process_resident_memory_bytes 2.5165824e7
";

    #[test]
    fn metrics_are_summed_over_labels() {
        assert_eq!(metric_sum(METRICS, "db_query_duration_seconds_count"), Some(150.0));
        assert_eq!(metric_sum(METRICS, "process_resident_memory_bytes"), Some(25_165_824.0));
        assert_eq!(metric_sum(METRICS, "redis_up"), None);
    }

    #[test]
    fn cpu_time_is_read_from_proc_stat() {
        let stat = "4242 (cache (demo)) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 566 0 0 20 0 4 0 100 \
                    1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(cpu_seconds_from_stat(stat), Some(18.0));
        assert_eq!(cpu_seconds_from_stat("garbage"), None);
        let own = process_cpu_seconds(std::process::id()).expect("our own stat");
        assert!(own >= 0.0);
    }

    #[test]
    fn a_thread_that_sleeps_switches_voluntarily() {
        let pid = std::process::id();
        let before = ContextSwitches::of(pid).expect("our own threads");
        // Each sleep gives up the core: a voluntary switch of this thread, which the sum includes.
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let spent = ContextSwitches::of(pid).expect("our own threads").since(before);
        assert!(spent.voluntary >= 3, "{spent:?}");
        assert_eq!(ContextSwitches::of(u32::MAX), None);
        let sum = spent.plus(ContextSwitches { voluntary: 1, involuntary: 2 });
        assert_eq!((sum.voluntary, sum.involuntary), (spent.voluntary + 1, spent.involuntary + 2));
    }

    #[test]
    fn l1_state_comes_from_the_stats() {
        assert_eq!(L1State::from_stats(&stats(json!({"hits": 1}))), L1State::Absent);
        assert_eq!(L1State::from_stats(&stats(json!({"l1": null}))), L1State::Off);
        assert_eq!(L1State::from_stats(&stats(json!({"l1": {"enabled": true, "active": false}}))), L1State::Off);
        assert_eq!(L1State::from_stats(&stats(json!({"l1": {"enabled": false}}))), L1State::Off);
        assert_eq!(L1State::from_stats(&stats(json!({"l1": {"enabled": true, "entries": 3}}))), L1State::On);
        assert_eq!(L1State::from_stats(&stats(json!({"l1": {"hits": 3}}))), L1State::On);
    }

    #[test]
    fn patterns_list_what_is_switched_on() {
        let on = stats(
            json!({"patterns": {"l1": false, "single_flight": true, "ttl_jitter_pct": 10, "warm_interval_secs": 0}}),
        );
        assert_eq!(patterns(&on).as_deref(), Some("single_flight, ttl_jitter_pct=10"));
        assert_eq!(patterns(&stats(json!({"patterns": {"l1": false}}))).as_deref(), Some("none"));
        assert_eq!(patterns(&stats(json!({}))), None);
    }

    #[test]
    fn counters_are_read_from_the_stats() {
        let body = stats(json!({"hits": 9, "misses": 1, "bypasses": 4, "errors": 0, "hit_rate": 0.9}));
        assert_eq!(counters_from_stats(&body), Counters { hits: 9, misses: 1, errors: 0, bypasses: 4 });
    }
}
