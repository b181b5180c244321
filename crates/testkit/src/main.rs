//! `cache-demo-stack`: throwaway PostgreSQL (loaded from `init.sql`) and Redis for `make run`.
//!
//! Starts both servers, runs the given command with `DATABASE_URL`, `REDIS_URL` and
//! `LISTEN_ADDR` set, and tears everything down when the command exits or on Ctrl-C/SIGTERM.

use std::ffi::OsString;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{Context, bail};
use cache_demo_testkit::{PgServer, RedisOptions, RedisServer, die_with_parent, init_sql_path};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "\
usage: cache-demo-stack [-- COMMAND [ARGS...]]

Starts a throwaway PostgreSQL (database `cache_demo` loaded from init.sql) and Redis on free
loopback ports, then runs COMMAND with DATABASE_URL and REDIS_URL set (and LISTEN_ADDR, default
127.0.0.1:8000). Stops everything when COMMAND exits or on Ctrl-C. Without COMMAND, the servers
run until Ctrl-C.";

const DATABASE: &str = "cache_demo";
const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8000";
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
    let Some(command) = parse_args(std::env::args_os().skip(1))? else {
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

    eprintln!("cache-demo-stack: starting PostgreSQL and Redis ...");
    let Some(stack) = rt.block_on(start_stack(&mut signals))? else {
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
    eprintln!("cache-demo-stack: stopping PostgreSQL and Redis");
    // Dropped here, outside the runtime: the teardown blocks.
    drop(stack);
    code
}

/// `None` for `--help`, else the command to run (empty: just run the servers).
fn parse_args(mut args: impl Iterator<Item = OsString>) -> anyhow::Result<Option<Vec<OsString>>> {
    let Some(first) = args.next() else {
        return Ok(Some(Vec::new()));
    };
    match first.to_str() {
        Some("-h" | "--help") => Ok(None),
        Some("--") => Ok(Some(args.collect())),
        Some(flag) if flag.starts_with('-') => bail!("unknown option {flag}\n\n{USAGE}"),
        _ => Ok(Some(std::iter::once(first).chain(args).collect())),
    }
}

struct Stack {
    pg: PgServer,
    redis: RedisServer,
}

impl Stack {
    fn start() -> anyhow::Result<Stack> {
        let pg = PgServer::start().context("starting PostgreSQL")?;
        pg.create_database_from_file(DATABASE, &init_sql_path()).context("loading init.sql")?;
        let redis = RedisServer::start(RedisOptions::default()).context("starting Redis")?;
        Ok(Stack { pg, redis })
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

/// Starts the servers on a blocking thread; `None` if a signal came first.
async fn start_stack(signals: &mut Signals) -> anyhow::Result<Option<Stack>> {
    let startup = tokio::task::spawn_blocking(Stack::start);
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
