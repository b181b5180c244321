//! A throwaway Redis server without persistence, as an owned child process, plus the faults
//! tests inject into it (crash, hang).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

use nix::sys::signal::Signal;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tempfile::TempDir;

use crate::Error;
use crate::process::{self, LogFile};

const SERVER: &str = "Redis";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// How to configure a [`RedisServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `--maxmemory`, e.g. `"64mb"`.
    pub maxmemory: String,
    /// `--maxmemory-policy`, e.g. `"allkeys-lru"`.
    pub policy: String,
    /// `--requirepass`; also used by [`RedisServer::cli`] and put in [`RedisServer::url`].
    pub password: Option<String>,
    /// Serve TLS only (a self-signed certificate made with `openssl`); the URL becomes
    /// `rediss://127.0.0.1:PORT/#insecure` (the client skips verification of that certificate).
    pub tls: bool,
}

impl Default for RedisOptions {
    /// 64mb, allkeys-lru, no password.
    fn default() -> Self {
        RedisOptions { maxmemory: "64mb".into(), policy: "allkeys-lru".into(), password: None, tls: false }
    }
}

/// A running `redis-server` on `127.0.0.1:<port>`, owned by this value.
///
/// No persistence: a restart starts empty. Dropping it kills the server and removes its
/// directory. The server process is killed by the kernel if this process dies without dropping
/// it (see the crate docs).
#[derive(Debug)]
pub struct RedisServer {
    opts: RedisOptions,
    log: LogFile,
    port: u16,
    child: Mutex<Option<Child>>,
    /// Removed when dropped, after `Drop for RedisServer` has killed the server.
    dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server --bind 127.0.0.1 --port <free port> --save '' --appendonly no
    /// --dir <temp dir> --maxmemory .. --maxmemory-policy .. [--requirepass ..] --daemonize no`
    /// and waits (at most 15 s) until it answers PING.
    pub fn start(opts: RedisOptions) -> Result<RedisServer, Error> {
        let dir = crate::workdir::create("redis", None)?;
        let log = LogFile { path: dir.path().join("redis.log") };
        let mut server = RedisServer { opts, log, port: 0, child: Mutex::new(None), dir };
        process::launch_on_free_port(|port| {
            server.port = port;
            server.launch()
        })?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`, or `redis://:PASSWORD@127.0.0.1:PORT/` with a password
    /// (percent-encoded).
    pub fn url(&self) -> String {
        let (scheme, fragment) = if self.opts.tls { ("rediss", "#insecure") } else { ("redis", "") };
        match &self.opts.password {
            Some(password) => format!("{scheme}://:{}@127.0.0.1:{}/{fragment}", percent_encode(password), self.port),
            None => format!("{scheme}://127.0.0.1:{}/{fragment}", self.port),
        }
    }

    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// The server's directory (log, would-be dump files); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file the server's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log.path
    }

    /// The server's pid while it runs (also while paused).
    pub fn pid(&self) -> Option<u32> {
        process::running_pid(&self.child)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// SIGKILLs the server (a crash, for fault tests) and reaps it. Does nothing when it is
    /// not running.
    pub fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            process::signal_child(&mut child, Signal::SIGKILL)?;
            if process::wait_timeout(&mut child, Duration::from_secs(10))
                .map_err(Error::io("waiting for the killed redis-server"))?
                .is_none()
            {
                return Err(Error::ShutdownTimeout {
                    server: SERVER,
                    signal: "SIGKILL",
                    timeout: Duration::from_secs(10),
                });
            }
        }
        Ok(())
    }

    /// SIGSTOPs the server: connections stay open but nothing answers (a hung Redis).
    pub fn pause(&self) -> Result<(), Error> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONTs a paused server; it then answers what it was sent meanwhile.
    pub fn resume(&self) -> Result<(), Error> {
        self.signal(Signal::SIGCONT)
    }

    /// Starts the server again on the same port with the same options (killing it first if it
    /// runs). It starts empty: there is no persistence.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill()?;
        self.launch()
    }

    /// Runs `redis-cli` with `args` against this server (authenticated when it has a password)
    /// and returns its stdout, trimmed: `cli(&["TTL", "cache-demo:product:1"])`.
    ///
    /// Error replies are errors (`redis-cli -e`); so are a dead server and a paused one (after
    /// 10 s).
    pub fn cli(&self, args: &[&str]) -> Result<String, Error> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-e", "-h", "127.0.0.1", "-p"]).arg(self.port.to_string());
        if self.opts.tls {
            cmd.args(["--tls", "--insecure"]);
        }
        if let Some(password) = &self.opts.password {
            cmd.args(["--no-auth-warning", "-a", password]);
        }
        cmd.args(args);
        let output = process::run(&mut cmd, CLI_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Kills a shared server at process exit (it is never dropped) and removes its directory.
    /// Skips a server another thread is using at that moment: the parent-death signal and the
    /// stale-directory cleanup deal with it then.
    pub(crate) fn stop_at_exit(&self) {
        let mut guard = match self.child.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if let Some(mut child) = guard.take() {
            process::kill_and_reap(&mut child);
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }

    fn signal(&self, signal: Signal) -> Result<(), Error> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let child = guard.as_mut().ok_or(Error::NotRunning { server: SERVER })?;
        process::signal_child(child, signal)
    }

    /// Starts `redis-server` on `self.port` and waits until it answers PING.
    fn launch(&mut self) -> Result<(), Error> {
        let (stdout, stderr, log_offset) = self.log.open()?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1"]);
        if self.opts.tls {
            let (cert, key) = self.self_signed_certificate()?;
            cmd.args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.arg("--port").arg(self.port.to_string());
        }
        cmd.args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(["--maxmemory", &self.opts.maxmemory])
            .args(["--maxmemory-policy", &self.opts.policy]);
        if let Some(password) = &self.opts.password {
            cmd.args(["--requirepass", password]);
        }
        cmd.args(["--daemonize", "no"]).current_dir(self.dir.path()).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = process::start_server(SERVER, cmd, self.port, &self.log, log_offset, READY_TIMEOUT, || {
            self.cli(&["PING"]).is_ok_and(|reply| reply == "PONG")
        })?;
        *self.child.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// A certificate for 127.0.0.1 in the server's directory, made once.
    fn self_signed_certificate(&self) -> Result<(std::path::PathBuf, std::path::PathBuf), Error> {
        let (cert, key) = (self.dir.path().join("tls.crt"), self.dir.path().join("tls.key"));
        if !cert.exists() {
            let mut cmd = Command::new("openssl");
            cmd.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert);
            process::run(&mut cmd, CLI_TIMEOUT)?;
        }
        Ok((cert, key))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) server.
        let _ = self.kill();
    }
}

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn percent_encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(percent_encode("s3cret-._~"), "s3cret-._~");
        assert_eq!(percent_encode("a b@c/d:é"), "a%20b%40c%2Fd%3A%C3%A9");
    }
}
