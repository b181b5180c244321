//! A throwaway Prometheus server scraping loopback targets with rule files loaded, as an owned child process,
//! and `promtool` run with a deadline.
//!
//! The server gets its own directory for its configuration and TSDB; nothing outside it is read or written.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::Error;
use crate::process::{self, LogFile};

const SERVER: &str = "Prometheus";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Prometheus closes its TSDB on SIGTERM: quick for a few minutes of data.
const STOP_GRACE: Duration = Duration::from_secs(10);
const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// One scrape job: `job_name` and the `host:port` addresses it scrapes at `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeJob {
    pub job: String,
    pub targets: Vec<String>,
}

impl ScrapeJob {
    pub fn new(job: impl Into<String>, target: impl Into<String>) -> Self {
        ScrapeJob { job: job.into(), targets: vec![target.into()] }
    }
}

/// How to configure a [`PrometheusServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusOptions {
    pub jobs: Vec<ScrapeJob>,
    /// Rule files to load (absolute paths, or relative to the current directory).
    pub rule_files: Vec<PathBuf>,
    pub scrape_interval: Duration,
    pub evaluation_interval: Duration,
    /// Listen on this port of 127.0.0.1; `None`: a free one.
    pub port: Option<u16>,
}

impl Default for PrometheusOptions {
    /// No jobs, no rules, scraping and evaluating every second, a free port.
    fn default() -> Self {
        PrometheusOptions {
            jobs: Vec::new(),
            rule_files: Vec::new(),
            scrape_interval: Duration::from_secs(1),
            evaluation_interval: Duration::from_secs(1),
            port: None,
        }
    }
}

/// A running `prometheus` on `127.0.0.1:<port>`, owned by this value.
///
/// Dropping it stops the server and removes its directory (configuration and data). The server process is killed
/// by the kernel if this process dies without dropping it (see the crate docs).
#[derive(Debug)]
pub struct PrometheusServer {
    opts: PrometheusOptions,
    log: LogFile,
    port: u16,
    child: Mutex<Option<Child>>,
    /// Removed when dropped, after `Drop for PrometheusServer` has stopped the server.
    dir: TempDir,
}

impl PrometheusServer {
    /// Writes `prometheus.yml` from `opts` into a fresh directory, starts
    /// `prometheus --config.file .. --storage.tsdb.path <dir>/data --web.listen-address 127.0.0.1:<port>` and
    /// waits (at most 30 s) until `/-/ready` answers 200. A rule file that does not load fails the start.
    pub fn start(opts: PrometheusOptions) -> Result<PrometheusServer, Error> {
        let dir = crate::workdir::create("prometheus", None)?;
        let config = render_config(&opts)?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(Error::io(format!("writing {}", config_path.display())))?;
        let log = LogFile { path: dir.path().join("prometheus.log") };
        let mut server = PrometheusServer { opts, log, port: 0, child: Mutex::new(None), dir };
        match server.opts.port {
            Some(port) => {
                server.port = port;
                server.launch()?;
            }
            None => process::launch_on_free_port(|port| {
                server.port = port;
                server.launch()
            })?,
        }
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, the web UI and the HTTP API (`/api/v1/...`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn options(&self) -> &PrometheusOptions {
        &self.opts
    }

    /// The generated `prometheus.yml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.yml")
    }

    /// The file the server's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log.path
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        process::running_pid(&self.child)
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s). Does nothing when it is not running.
    pub fn stop(&mut self) -> Result<(), Error> {
        process::stop_server(SERVER, &mut self.child, Signal::SIGTERM, STOP_GRACE)
    }

    fn launch(&mut self) -> Result<(), Error> {
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", self.config_path().display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port));
        let ready = Ready { port: self.port, path: "/-/ready", timeout: READY_TIMEOUT };
        launch_http_server(SERVER, cmd, self.dir.path(), &self.log, ready, &mut self.child)
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        // stop() SIGKILLs after the grace period; the directory goes with `self.dir`.
        let _ = self.stop();
    }
}

/// The configuration file for `opts`: global intervals, the rule files and one static job per [`ScrapeJob`].
fn render_config(opts: &PrometheusOptions) -> Result<String, Error> {
    let mut out = String::new();
    let secs = |d: Duration| format!("{}ms", d.as_millis().max(1));
    let _ = writeln!(out, "global:");
    let _ = writeln!(out, "  scrape_interval: {}", secs(opts.scrape_interval));
    let _ = writeln!(out, "  evaluation_interval: {}", secs(opts.evaluation_interval));
    // A scrape must end before the next one starts.
    let _ = writeln!(out, "  scrape_timeout: {}", secs(opts.scrape_interval));
    let _ = writeln!(out, "rule_files:{}", if opts.rule_files.is_empty() { " []" } else { "" });
    for file in &opts.rule_files {
        let file = std::path::absolute(file).map_err(Error::io(format!("resolving {}", file.display())))?;
        let _ = writeln!(out, "  - {}", yaml_string(&file.to_string_lossy()));
    }
    let _ = writeln!(out, "scrape_configs:{}", if opts.jobs.is_empty() { " []" } else { "" });
    for job in &opts.jobs {
        let targets: Vec<String> = job.targets.iter().map(|t| yaml_string(t)).collect();
        let _ = writeln!(out, "  - job_name: {}", yaml_string(&job.job));
        let _ = writeln!(out, "    static_configs:");
        let _ = writeln!(out, "      - targets: [{}]", targets.join(", "));
    }
    Ok(out)
}

/// `s` as a YAML double-quoted scalar.
fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// When an HTTP server is up: `GET path` on `port` answers 200 within `timeout`.
pub(crate) struct Ready<'a> {
    pub port: u16,
    pub path: &'a str,
    pub timeout: Duration,
}

/// Starts an HTTP server (Prometheus, an exporter) in `dir`, its output appended to `log`, waits until it is
/// [`Ready`] and keeps the process in `child`.
pub(crate) fn launch_http_server(
    server: &'static str,
    mut cmd: Command,
    dir: &std::path::Path,
    log: &LogFile,
    ready: Ready<'_>,
    child: &mut Mutex<Option<Child>>,
) -> Result<(), Error> {
    let Ready { port, path: ready_path, timeout } = ready;
    let (stdout, stderr, log_offset) = log.open()?;
    cmd.current_dir(dir).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    let started = process::start_server(server, cmd, port, log, log_offset, timeout, || {
        http_get(port, ready_path).is_some_and(|(status, _)| status == 200)
    })?;
    *child.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(started);
    Ok(())
}

/// `GET path` on `127.0.0.1:port` over HTTP/1.0: the status code and the body, or `None` when nothing answers
/// in time. Enough for readiness probes of loopback servers; not a general HTTP client.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Runs `promtool` with `args` (at most 60 s) and returns its stdout; a failure carries its output.
///
/// `promtool(&["test", "rules", "cache-demo.rules.test.yml"])`
pub fn promtool<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<String, Error> {
    let mut cmd = Command::new("promtool");
    cmd.args(args);
    let output = process::run(&mut cmd, PROMTOOL_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_intervals_rules_and_jobs() {
        let opts = PrometheusOptions {
            jobs: vec![ScrapeJob::new("cache-demo", "127.0.0.1:8000"), ScrapeJob::new("redis", "127.0.0.1:9121")],
            rule_files: vec![PathBuf::from("/r/a \"b\".yml")],
            scrape_interval: Duration::from_millis(500),
            ..PrometheusOptions::default()
        };
        let config = render_config(&opts).unwrap();
        assert_eq!(
            config,
            "global:\n  scrape_interval: 500ms\n  evaluation_interval: 1000ms\n  scrape_timeout: 500ms\n\
             rule_files:\n  - \"/r/a \\\"b\\\".yml\"\n\
             scrape_configs:\n  - job_name: \"cache-demo\"\n    static_configs:\n      - targets: [\"127.0.0.1:8000\"]\n\
             \x20 - job_name: \"redis\"\n    static_configs:\n      - targets: [\"127.0.0.1:9121\"]\n"
        );
    }

    #[test]
    fn config_without_jobs_or_rules_is_still_valid_yaml_lists() {
        let config = render_config(&PrometheusOptions::default()).unwrap();
        assert!(config.contains("rule_files: []\n") && config.contains("scrape_configs: []\n"), "{config}");
    }
}
