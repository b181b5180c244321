//! A throwaway PostgreSQL server: initdb into a temp dir, `postgres` as an owned child process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User};
use tempfile::TempDir;

use crate::Error;
use crate::process::{self, LogFile};

const SERVER: &str = "PostgreSQL";
/// The superuser initdb creates; every connection uses it (trust authentication).
const SUPERUSER: &str = "postgres";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Fast shutdown (SIGINT) rolls back sessions and checkpoints: quick with fsync off.
const STOP_GRACE: Duration = Duration::from_secs(15);
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// A running PostgreSQL server on `127.0.0.1:<port>`, owned by this value.
///
/// Trust authentication, superuser `postgres`, no password. Dropping it stops the server and
/// removes its directory. The server process is killed by the kernel if this process dies
/// without dropping it (see the crate docs).
#[derive(Debug)]
pub struct PgServer {
    bins: &'static PgBins,
    /// The Unix user to run the server as: `postgres` when we are root, else ourselves.
    run_as: Option<String>,
    data_dir: PathBuf,
    log: LogFile,
    port: u16,
    child: Mutex<Option<Child>>,
    /// Template databases already loaded (see [`PgServer::ensure_template`]). The lock is held
    /// while one loads, so concurrent callers wait instead of racing to create it.
    templates: Mutex<HashSet<String>>,
    /// Removed when dropped, after `Drop for PgServer` has stopped the server.
    dir: TempDir,
}

impl PgServer {
    /// initdb (trust auth, UTF8, C.UTF-8 locale, `--no-sync`) into a fresh directory under
    /// [`base_dir`](crate::base_dir) and start `postgres` on `127.0.0.1:<free port>` with
    /// `fsync=off` and its Unix socket inside that directory.
    ///
    /// Blocks until the server accepts connections (at most 30 s). As root, the directory is
    /// given to the `postgres` user and initdb and postgres run through
    /// `setpriv --reuid=postgres --regid=postgres --init-groups`.
    pub fn start() -> Result<PgServer, Error> {
        let bins = PgBins::get();
        let owner = postgres_user()?;
        let dir = crate::workdir::create("pg", owner.as_ref().map(|u| (u.uid, u.gid)))?;
        let data_dir = dir.path().join("data");
        let log = LogFile { path: dir.path().join("postgres.log") };
        let mut server = PgServer {
            bins,
            run_as: owner.map(|u| u.name),
            data_dir,
            log,
            port: 0,
            child: Mutex::new(None),
            templates: Mutex::new(HashSet::new()),
            dir,
        };
        server.initdb()?;
        process::launch_on_free_port(|port| {
            server.port = port;
            server.launch()
        })?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's directory (data dir, socket, log); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file the server's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log.path
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running_child(|child| child.id())
    }

    pub fn is_running(&self) -> bool {
        self.running_child(|_| ()).is_some()
    }

    /// `CREATE DATABASE name`, then loads `sql_file` into it with
    /// `psql -v ON_ERROR_STOP=1 -q -f FILE`.
    pub fn create_database_from_file(&self, name: &str, sql_file: &Path) -> Result<(), Error> {
        if !sql_file.is_file() {
            return Err(Error::Missing { what: "SQL file", path: sql_file.to_owned() });
        }
        self.psql("postgres", &format!("CREATE DATABASE {}", quote_ident(name)))?;
        let mut cmd = self.psql_command(name);
        cmd.arg("-f").arg(sql_file);
        process::run(&mut cmd, LOAD_TIMEOUT)?;
        Ok(())
    }

    /// `CREATE DATABASE name TEMPLATE template`: a fast copy of a loaded database.
    pub fn create_database_from_template(&self, name: &str, template: &str) -> Result<(), Error> {
        self.psql("postgres", &format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(name), quote_ident(template)))?;
        Ok(())
    }

    /// Makes sure template database `name` exists, loading it from `sql_file` the first time.
    ///
    /// Safe to call from many threads at once: one loads, the others wait. The template is
    /// marked `IS_TEMPLATE` and closed to connections, because `CREATE DATABASE .. TEMPLATE`
    /// fails while anyone is connected to it.
    pub fn ensure_template(&self, name: &str, sql_file: &Path) -> Result<(), Error> {
        let mut loaded = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.contains(name) {
            return Ok(());
        }
        let quoted = quote_ident(name);
        let result = self.create_database_from_file(name, sql_file).and_then(|()| {
            self.psql("postgres", &format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"))
        });
        if let Err(e) = result {
            // Leave no half-loaded template behind for the next attempt to clone.
            let _ = self.psql("postgres", &format!("DROP DATABASE IF EXISTS {quoted}"));
            return Err(e);
        }
        loaded.insert(name.to_owned());
        Ok(())
    }

    /// Runs `sql` with psql against database `db` and returns its stdout without the trailing
    /// newline.
    ///
    /// Output is unaligned and tuples-only (`-A -t`): one row per line, columns separated by
    /// `|`, so `psql("postgres", "select 1")` returns `"1"`. Stops at the first error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, Error> {
        let mut cmd = self.psql_command(db);
        cmd.args(["-A", "-t", "-c", sql]);
        let output = process::run(&mut cmd, QUERY_TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        Ok(stdout.trim_end_matches('\n').to_owned())
    }

    /// Stops the server with SIGINT (fast shutdown: disconnects clients) and waits for it,
    /// keeping the data so [`restart`](Self::restart) brings it back on the same port.
    ///
    /// Does nothing when it is not running. If it does not exit within 15 s it is SIGKILLed
    /// and [`Error::ShutdownTimeout`] is returned.
    pub fn stop(&mut self) -> Result<(), Error> {
        process::stop_server(SERVER, &mut self.child, Signal::SIGINT, STOP_GRACE)
    }

    /// Starts the server again on the same port with the same data (stopping it first if it
    /// runs). Fails if another process took the port meanwhile.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        self.launch()
    }

    /// Stops a shared server at process exit (it is never dropped) and removes its directory.
    /// Skips a server another thread is using at that moment: the parent-death signal and the
    /// stale-directory cleanup deal with it then.
    pub(crate) fn stop_at_exit(&self) {
        let mut guard = match self.child.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if let Some(mut child) = guard.take() {
            let _ = process::stop_child(&mut child, Signal::SIGINT, STOP_GRACE);
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }

    /// Starts `postgres` on `self.port` and waits until it accepts connections.
    fn launch(&mut self) -> Result<(), Error> {
        let (stdout, stderr, log_offset) = self.log.open()?;
        let mut cmd = self.server_command(&self.bins.postgres);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            // Room for many test pools at once (each test may open its own).
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child =
            process::start_server(SERVER, cmd, self.port, &self.log, log_offset, READY_TIMEOUT, || self.is_ready())?;
        *self.child.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    fn is_ready(&self) -> bool {
        let mut cmd = Command::new(&self.bins.pg_isready);
        cmd.args(["-q", "-h", "127.0.0.1", "-U", SUPERUSER, "-d", "postgres", "-t", "2"])
            .arg("-p")
            .arg(self.port.to_string());
        process::run(&mut cmd, Duration::from_secs(5)).is_ok()
    }

    /// A command for a server-side binary, run as `postgres` through setpriv when we are root.
    fn server_command(&self, program: &Path) -> Command {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    // Changing uid clears the parent-death signal set before exec; set it again.
                    .arg("--pdeathsig=SIGKILL")
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => Command::new(program),
        };
        // The caller's cwd may be unreadable for `postgres` (e.g. /root).
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn initdb(&self) -> Result<(), Error> {
        let mut cmd = self.server_command(&self.bins.initdb);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"]);
        process::run(&mut cmd, INITDB_TIMEOUT)?;
        Ok(())
    }

    /// psql connected over TCP as the superuser, ignoring ~/.psqlrc, stopping at the first error.
    fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(&self.bins.psql);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", SUPERUSER])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `f` on the child if it is still running (reaping it if it exited).
    fn running_child<T>(&self, f: impl FnOnce(&Child) -> T) -> Option<T> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(f(child)),
            _ => {
                *guard = None;
                None
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // stop() SIGKILLs after the grace period; the directory goes with `self.dir`.
        let _ = self.stop();
    }
}

/// Where the PostgreSQL binaries are, found once per process.
#[derive(Debug)]
struct PgBins {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
    pg_isready: PathBuf,
}

impl PgBins {
    /// `pg_config --bindir` if it has a server, else the newest `/usr/lib/postgresql/*/bin`,
    /// else whatever `PATH` finds.
    fn get() -> &'static PgBins {
        static BINS: OnceLock<PgBins> = OnceLock::new();
        BINS.get_or_init(|| {
            let bindir = pg_config_bindir().or_else(newest_debian_bindir);
            let find = |name: &str| match &bindir {
                Some(dir) if dir.join(name).is_file() => dir.join(name),
                _ => PathBuf::from(name),
            };
            PgBins {
                initdb: find("initdb"),
                postgres: find("postgres"),
                psql: find("psql"),
                pg_isready: find("pg_isready"),
            }
        })
    }
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = process::run(Command::new("pg_config").arg("--bindir"), Duration::from_secs(10)).ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    // Debian's pg_config may belong to a client-only version without a server.
    dir.join("postgres").is_file().then_some(dir)
}

fn newest_debian_bindir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

struct Owner {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// The `postgres` user when we are root (PostgreSQL refuses to run as root), else `None`.
fn postgres_user() -> Result<Option<Owner>, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user =
        User::from_name(SUPERUSER).map_err(Error::sys("looking up user `postgres`"))?.ok_or(Error::NoPostgresUser)?;
    Ok(Some(Owner { name: user.name, uid: user.uid, gid: user.gid }))
}

/// `name` as a double-quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn quote_ident_doubles_embedded_quotes() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
