//! Child processes: spawning servers so they die with this process, running helper commands
//! with a deadline, and stopping children without ever waiting forever.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;

/// Longest single sleep while polling anything.
const POLL_MAX: Duration = Duration::from_millis(50);

/// Sleeps for the `n`-th time in a polling loop: 5 ms, 10 ms, ... capped at [`POLL_MAX`].
pub(crate) fn poll_sleep(n: u32) {
    thread::sleep((Duration::from_millis(5) * (n + 1)).min(POLL_MAX));
}

/// Makes `cmd`'s child get SIGKILL when the thread that spawns it exits (`PR_SET_PDEATHSIG`),
/// so it cannot outlive this process. Spawn from a thread that lives as long as you need the
/// child (e.g. the main thread).
///
/// Also puts it in its own process group, so a Ctrl-C in a terminal (which signals the whole
/// foreground group) does not reach it: the parent decides what to pass on.
pub fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec; it only makes two system calls and
    // builds an io::Error from an errno (no allocation), all async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns a long-lived server process from the process-wide spawner thread.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Test
/// threads and tokio's blocking-pool threads come and go, so every server is forked by one
/// thread that lives as long as the process: the servers then die exactly when the process does,
/// whichever thread asked for them, even if no destructor ever runs (statics, SIGKILL, panics).
pub(crate) fn spawn_server(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

    die_with_parent(&mut cmd);
    let (reply_tx, reply_rx) = mpsc::channel();
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        let tx = match &*spawner {
            Some(tx) => tx,
            None => spawner.insert(start_spawner()?),
        };
        tx.send((cmd, reply_tx)).map_err(|_| io::Error::other("the testkit spawner thread is gone"))?;
    }
    reply_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| io::Error::other("the testkit spawner thread did not answer within 30 s"))?
}

fn start_spawner() -> io::Result<mpsc::Sender<SpawnRequest>> {
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    thread::Builder::new().name("testkit-spawner".into()).spawn(move || {
        for (mut cmd, reply) in rx {
            // The asker may have given up (timeout); the child is then simply dropped.
            let _ = reply.send(cmd.spawn());
        }
        // Unreachable while the static sender lives; never exit anyway.
        loop {
            thread::park();
        }
    })?;
    Ok(tx)
}

/// `program arg arg ...` for error messages, with values of password options hidden.
pub(crate) fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program()).to_string_lossy().into_owned();
    let mut words = vec![program];
    let mut hide_next = false;
    for arg in cmd.get_args() {
        if hide_next {
            words.push("***".into());
        } else {
            words.push(shell_word(arg));
        }
        hide_next = matches!(arg.to_str(), Some("-a" | "--requirepass"));
    }
    words.join(" ")
}

fn shell_word(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:@,+%".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a short-lived helper command to completion, killing it after `timeout`.
///
/// Returns its output when it exits successfully, [`Error::Command`] with its stderr otherwise.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, Error> {
    let command = describe(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_parent(cmd);
    let mut child = cmd.spawn().map_err(Error::io(format!("cannot run `{command}`")))?;
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let status = match wait_timeout(&mut child, timeout).map_err(Error::io(format!("waiting for `{command}`")))? {
        Some(status) => status,
        None => {
            kill_and_reap(&mut child);
            return Err(Error::CommandTimeout { command, timeout });
        }
    };
    let output =
        Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() };
    if output.status.success() {
        Ok(output)
    } else {
        let text = if output.stderr.iter().all(u8::is_ascii_whitespace) { &output.stdout } else { &output.stderr };
        Err(Error::Command { command, status: output.status, output: String::from_utf8_lossy(text).trim().to_owned() })
    }
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        poll_sleep(n);
        n += 1;
    }
}

/// SIGKILLs `child` and reaps it (bounded: a SIGKILLed process only lingers in
/// uninterruptible sleep).
pub(crate) fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill();
    wait_timeout(child, Duration::from_secs(10)).ok().flatten()
}

/// Sends `signal` to a child that has not been reaped yet.
pub(crate) fn signal_child(child: &mut Child, signal: Signal) -> Result<(), Error> {
    // Only signal a pid we have not reaped: once reaped, the pid may belong to someone else.
    if child.try_wait().map_err(Error::io("checking a server process"))?.is_some() {
        return Ok(());
    }
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, signal).map_err(Error::sys(format!("sending {signal} to pid {pid}")))
}

/// Asks `child` to exit with `signal`; after `grace`, SIGKILLs it.
///
/// Returns `Ok(true)` when it exited on its own, `Ok(false)` when it had to be killed.
pub(crate) fn stop_child(child: &mut Child, signal: Signal, grace: Duration) -> Result<bool, Error> {
    signal_child(child, signal)?;
    let exited = wait_timeout(child, grace).map_err(Error::io("waiting for a server to exit"))?;
    if exited.is_some() {
        return Ok(true);
    }
    kill_and_reap(child);
    Ok(false)
}

/// The pid of the server in `slot` while it runs (also while paused); forgets a server that has exited.
pub(crate) fn running_pid(slot: &Mutex<Option<Child>>) -> Option<u32> {
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    let child = guard.as_mut()?;
    match child.try_wait() {
        Ok(None) => Some(child.id()),
        _ => {
            *guard = None;
            None
        }
    }
}

/// Stops the server in `slot` with `signal`, SIGKILLing it after `grace`: [`Error::ShutdownTimeout`] then.
/// Does nothing when no server is there.
pub(crate) fn stop_server(
    server: &'static str,
    slot: &mut Mutex<Option<Child>>,
    signal: Signal,
    grace: Duration,
) -> Result<(), Error> {
    let Some(mut child) = slot.get_mut().unwrap_or_else(|e| e.into_inner()).take() else {
        return Ok(());
    };
    if stop_child(&mut child, signal, grace)? {
        Ok(())
    } else {
        Err(Error::ShutdownTimeout { server, signal: signal.as_str(), timeout: grace })
    }
}

/// How many free ports a server gets to try before its start fails: another process may take a port between
/// our probe and the server's bind.
const PORT_ATTEMPTS: u32 = 5;

/// Runs `launch` on free loopback ports until one binds (a port conflict moves on to another port).
pub(crate) fn launch_on_free_port(mut launch: impl FnMut(u16) -> Result<(), Error>) -> Result<(), Error> {
    for attempt in 1..=PORT_ATTEMPTS {
        match launch(free_port()?) {
            Err(e) if e.is_port_conflict() && attempt < PORT_ATTEMPTS => continue,
            result => return result,
        }
    }
    unreachable!("the last attempt returns")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Another process may take it before the server binds it; callers retry on "Address already in
/// use".
pub(crate) fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(Error::io("binding 127.0.0.1:0"))?;
    let port = listener.local_addr().map_err(Error::io("reading a bound port"))?.port();
    Ok(port)
}

/// Spawns a server and waits until it serves (see [`wait_ready`]); a server that does not is killed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_server(
    server: &'static str,
    cmd: Command,
    port: u16,
    log: &LogFile,
    log_offset: u64,
    timeout: Duration,
    ready: impl Fn() -> bool,
) -> Result<Child, Error> {
    let what = describe(&cmd);
    let mut child = spawn_server(cmd).map_err(Error::io(format!("starting `{what}`")))?;
    match wait_ready(server, &mut child, port, log, log_offset, timeout, ready) {
        Ok(()) => Ok(child),
        Err(e) => {
            kill_and_reap(&mut child);
            Err(e)
        }
    }
}

/// Waits until a freshly started server on `port` accepts TCP connections and `ready()` says it serves, at most
/// `timeout`; fails early, with the tail of its log, if the process exits.
fn wait_ready(
    server: &'static str,
    child: &mut Child,
    port: u16,
    log: &LogFile,
    log_offset: u64,
    timeout: Duration,
    ready: impl Fn() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut n = 0;
    loop {
        if let Some(status) = child.try_wait().map_err(Error::io(format!("checking the {server} process")))? {
            return Err(Error::ServerExited { server, status, log: log.path.clone(), log_tail: log.tail(log_offset) });
        }
        // The TCP probe is cheap; `ready` then tells "serving" from "starting up".
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() && ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::ServerNotReady {
                server,
                timeout,
                log: log.path.clone(),
                log_tail: log.tail(log_offset),
            });
        }
        poll_sleep(n);
        n += 1;
    }
}

/// The server's log file: where its stdout and stderr go.
#[derive(Debug)]
pub(crate) struct LogFile {
    pub(crate) path: std::path::PathBuf,
}

impl LogFile {
    /// Opens the log for appending; returns two handles for stdout/stderr and the current length,
    /// so errors can show only what this launch wrote.
    pub(crate) fn open(&self) -> Result<(Stdio, Stdio, u64), Error> {
        let context = || format!("opening log file {}", self.path.display());
        let file =
            fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| Error::io(context())(e))?;
        let len = file.metadata().map_err(|e| Error::io(context())(e))?.len();
        let dup = file.try_clone().map_err(|e| Error::io(context())(e))?;
        Ok((Stdio::from(file), Stdio::from(dup), len))
    }

    /// The last 20 lines written after byte `offset`.
    pub(crate) fn tail(&self, offset: u64) -> String {
        const TAIL_LINES: usize = 20;
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => return format!("(cannot read log: {e})"),
        };
        let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        if tail.trim().is_empty() { "(log is empty)".into() } else { tail }
    }
}
