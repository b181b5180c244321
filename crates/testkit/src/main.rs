//! `cache-demo-stack`: throwaway PostgreSQL (loaded from `init.sql`) and Redis for `make run`; with
//! `--observe` also redis_exporter and Prometheus with the repository's rules for `make observe`.
//!
//! Starts the servers, runs the given command with `DATABASE_URL`, `REDIS_URL` and
//! `LISTEN_ADDR` set, and tears everything down when the command exits or on Ctrl-C/SIGTERM.

use std::ffi::OsString;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{Context, bail};
use cache_demo_testkit::{
    PgServer, PrometheusOptions, PrometheusServer, RedisExporter, RedisOptions, RedisServer, ScrapeJob,
    die_with_parent, init_sql_path, rules_path,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "\
usage: cache-demo-stack [--observe] [-- COMMAND [ARGS...]]

Starts a throwaway PostgreSQL (database `cache_demo` loaded from init.sql) and Redis on free
loopback ports, then runs COMMAND with DATABASE_URL and REDIS_URL set (and LISTEN_ADDR, default
127.0.0.1:8000). Stops everything when COMMAND exits or on Ctrl-C. Without COMMAND, the servers
run until Ctrl-C.

--observe  also start redis_exporter and Prometheus (on PROMETHEUS_PORT, default 9090) with
           observability/prometheus/cache-demo.rules.yml, scraping LISTEN_ADDR and the exporter.";

const DATABASE: &str = "cache_demo";
const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8000";
const DEFAULT_PROMETHEUS_PORT: u16 = 9090;
/// Scrape and rule evaluation interval of `--observe`: quick to react, light on a laptop.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long the command gets to exit after a forwarded signal before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cache-demo-stack: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let Some(Args { observe, command }) = parse_args(std::env::args_os().skip(1))? else {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("building the tokio runtime")?;
    // Handle Ctrl-C from now on, so one during startup still tears down cleanly.
    let mut signals = {
        let _guard = rt.enter();
        Signals::new()?
    };

    if observe {
        eprintln!("cache-demo-stack: starting PostgreSQL, Redis, redis_exporter and Prometheus ...");
    } else {
        eprintln!("cache-demo-stack: starting PostgreSQL and Redis ...");
    }
    let Some(stack) = rt.block_on(start_stack(observe, &mut signals))? else {
        // The startup task finishes in the background and its servers are dropped when the
        // runtime shuts down below.
        eprintln!("cache-demo-stack: interrupted during startup, stopping");
        return Ok(ExitCode::from(130));
    };
    stack.print_summary(&command);

    let code = rt.block_on(async {
        match command.split_first() {
            Some((program, args)) => run_command(&stack, program, args, &mut signals).await,
            None => {
                let signal = signals.recv().await;
                eprintln!("cache-demo-stack: {signal}, stopping");
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    if stack.observed.is_some() {
        eprintln!("cache-demo-stack: stopping Prometheus, redis_exporter, PostgreSQL and Redis");
    } else {
        eprintln!("cache-demo-stack: stopping PostgreSQL and Redis");
    }
    // Dropped here, outside the runtime: the teardown blocks.
    drop(stack);
    code
}

#[derive(Debug, PartialEq)]
struct Args {
    observe: bool,
    /// The command to run; empty: just run the servers.
    command: Vec<OsString>,
}

/// `None` for `--help`, else the options and the command to run.
fn parse_args(mut args: impl Iterator<Item = OsString>) -> anyhow::Result<Option<Args>> {
    let mut observe = false;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(None),
            Some("--observe") => observe = true,
            Some("--") => return Ok(Some(Args { observe, command: args.collect() })),
            Some(flag) if flag.starts_with('-') => bail!("unknown option {flag}\n\n{USAGE}"),
            _ => return Ok(Some(Args { observe, command: std::iter::once(arg).chain(args).collect() })),
        }
    }
    Ok(Some(Args { observe, command: Vec::new() }))
}

/// Fields drop in order: Prometheus and the exporter stop before the servers they watch.
struct Stack {
    /// `--observe`: redis_exporter and the Prometheus scraping it and the command.
    observed: Option<(RedisExporter, PrometheusServer)>,
    pg: PgServer,
    redis: RedisServer,
}

impl Stack {
    fn start(observe: bool) -> anyhow::Result<Stack> {
        let pg = PgServer::start().context("starting PostgreSQL")?;
        pg.create_database_from_file(DATABASE, &init_sql_path()).context("loading init.sql")?;
        let redis = RedisServer::start(RedisOptions::default()).context("starting Redis")?;
        let observed = if observe { Some(start_observing(&redis)?) } else { None };
        Ok(Stack { observed, pg, redis })
    }

    fn database_url(&self) -> String {
        self.pg.url(DATABASE)
    }

    fn print_summary(&self, command: &[OsString]) {
        let opts = self.redis.options();
        let db_url = self.database_url();
        eprintln!("cache-demo-stack: ready (all data is thrown away on exit)");
        eprintln!("  PostgreSQL  {db_url}");
        eprintln!("              inspect: psql '{db_url}'");
        eprintln!("  Redis       {}  (maxmemory {}, {})", self.redis.url(), opts.maxmemory, opts.policy);
        eprintln!("              inspect: redis-cli -p {} --scan", self.redis.port());
        if let Some((exporter, prometheus)) = &self.observed {
            eprintln!(
                "  Prometheus  {}  (alerts: {}/alerts, rules: {})",
                prometheus.url(),
                prometheus.url(),
                rules_path().display()
            );
            eprintln!(
                "              scrapes the app at {} and redis_exporter at {}",
                listen_addr(),
                exporter.address()
            );
        }
        if command.is_empty() {
            eprintln!("  Press Ctrl-C to stop.");
        } else {
            let shown: Vec<String> = command.iter().map(shell_quote).collect();
            eprintln!("  Running     {}  (LISTEN_ADDR={})", shown.join(" "), listen_addr());
            eprintln!("  Press Ctrl-C to stop it and the servers.");
        }
    }
}

/// `arg` as a shell would need it, for display.
fn shell_quote(arg: &OsString) -> String {
    let arg = arg.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_=./:@,+%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// redis_exporter for `redis`, and Prometheus with the repository's rules scraping it and the app at
/// `LISTEN_ADDR` (not up yet: Prometheus shows it down until it listens).
fn start_observing(redis: &RedisServer) -> anyhow::Result<(RedisExporter, PrometheusServer)> {
    let exporter = RedisExporter::start(redis).context("starting redis_exporter")?;
    let port = match std::env::var("PROMETHEUS_PORT") {
        Ok(port) => port.parse().with_context(|| format!("PROMETHEUS_PORT={port} is not a port number"))?,
        Err(_) => DEFAULT_PROMETHEUS_PORT,
    };
    let prometheus = PrometheusServer::start(PrometheusOptions {
        jobs: vec![ScrapeJob::new("cache-demo", listen_addr()), ScrapeJob::new("redis", exporter.address())],
        rule_files: vec![rules_path()],
        scrape_interval: OBSERVE_INTERVAL,
        evaluation_interval: OBSERVE_INTERVAL,
        port: Some(port),
    })
    .with_context(|| format!("starting Prometheus on port {port} (PROMETHEUS_PORT picks another)"))?;
    Ok((exporter, prometheus))
}

/// Starts the servers on a blocking thread; `None` if a signal came first.
async fn start_stack(observe: bool, signals: &mut Signals) -> anyhow::Result<Option<Stack>> {
    let startup = tokio::task::spawn_blocking(move || Stack::start(observe));
    tokio::select! {
        stack = startup => Ok(Some(stack.context("startup task panicked")??)),
        _ = signals.recv() => Ok(None),
    }
}

fn listen_addr() -> String {
    std::env::var("LISTEN_ADDR").unwrap_or_else(|_| DEFAULT_LISTEN_ADDR.to_owned())
}

/// Runs the command until it exits or a signal arrives; returns its exit code.
async fn run_command(
    stack: &Stack,
    program: &OsString,
    args: &[OsString],
    signals: &mut Signals,
) -> anyhow::Result<ExitCode> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("DATABASE_URL", stack.database_url())
        .env("REDIS_URL", stack.redis.url())
        .env("LISTEN_ADDR", listen_addr())
        .kill_on_drop(true);
    // Own process group: a terminal Ctrl-C reaches only us, and we forward it exactly once.
    // Parent-death signal: if we are SIGKILLed, the command dies too (we fork it from the main
    // thread, which lives as long as the process).
    die_with_parent(cmd.as_std_mut());
    let mut child = cmd.spawn().with_context(|| format!("running {}", program.to_string_lossy()))?;

    let status = tokio::select! {
        status = child.wait() => status.context("waiting for the command")?,
        signal = signals.recv() => stop_child(&mut child, signal, signals).await?,
    };
    Ok(exit_code(status))
}

/// Forwards `signal` to the command's process group (as a terminal would), then waits for it:
/// at most [`CHILD_GRACE`], or until a second signal, after which the group is killed.
async fn stop_child(
    child: &mut tokio::process::Child,
    signal: Signal,
    signals: &mut Signals,
) -> anyhow::Result<ExitStatus> {
    // The command leads its own process group (see `die_with_parent`): pgid == pid.
    let group = child.id().and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw);
    if let Some(group) = group {
        eprintln!(
            "cache-demo-stack: {signal}: passing it on to the command, waiting up to {}s \
             (Ctrl-C again to kill it)",
            CHILD_GRACE.as_secs()
        );
        // It may have exited just now; wait() below tells.
        let _ = killpg(group, signal);
    }
    tokio::select! {
        status = child.wait() => return status.context("waiting for the command"),
        _ = tokio::time::sleep(CHILD_GRACE) => {
            eprintln!("cache-demo-stack: the command did not exit in time, killing it");
        }
        _ = signals.recv() => eprintln!("cache-demo-stack: killing the command"),
    }
    if let Some(group) = group {
        // Also whatever it started, e.g. the real program under `sh -c`.
        let _ = killpg(group, Signal::SIGKILL);
    }
    // Fails only if it was already reaped, which wait() then reports.
    let _ = child.start_kill();
    child.wait().await.context("waiting for the command")
}

/// The command's exit code, or 128 + signal number if a signal ended it (as shells do).
fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|signal| 128 + signal)).unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called inside the runtime.
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("handling SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::SIGINT,
            _ = self.terminate.recv() => Signal::SIGTERM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, parse_args};
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> Option<Args> {
        parse_args(args.iter().map(OsString::from)).unwrap()
    }

    #[test]
    fn observe_comes_before_the_command() {
        let args = parse(&["--observe", "--", "app", "--observe"]).unwrap();
        assert!(args.observe);
        assert_eq!(args.command, ["app", "--observe"]);
        assert_eq!(parse(&["app"]).unwrap(), Args { observe: false, command: vec!["app".into()] });
        assert_eq!(parse(&["--observe"]).unwrap(), Args { observe: true, command: vec![] });
        assert_eq!(parse(&["--observe", "--help"]), None);
        assert!(parse_args(["--obsrve"].iter().map(OsString::from)).is_err());
    }
}
