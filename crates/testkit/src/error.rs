//! The one error type of the library.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a server or helper command could not do what was asked.
///
/// Server failures carry the tail of the server's log file, so a failing test shows why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A helper command (initdb, psql, redis-cli, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: ExitStatus,
        /// Its stderr, or stdout when stderr was empty (trimmed).
        output: String,
    },

    /// A helper command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout { command: String, timeout: Duration },

    /// The server process exited while it was starting.
    #[error("{server} exited during startup ({status}); last lines of {}:\n{log_tail}", log.display())]
    ServerExited { server: &'static str, status: ExitStatus, log: PathBuf, log_tail: String },

    /// The server process kept running but never accepted connections.
    #[error("{server} did not accept connections within {timeout:?} (killed it); last lines of {}:\n{log_tail}", log.display())]
    ServerNotReady { server: &'static str, timeout: Duration, log: PathBuf, log_tail: String },

    /// The server ignored its shutdown signal and had to be killed.
    #[error("{server} did not exit within {timeout:?} after {signal}, so it was killed")]
    ShutdownTimeout { server: &'static str, signal: &'static str, timeout: Duration },

    /// The operation needs a running server and this one is stopped or was killed.
    #[error("{server} is not running")]
    NotRunning { server: &'static str },

    /// Running as root, but there is no `postgres` user to run PostgreSQL as.
    #[error(
        "running as root and no `postgres` user exists; PostgreSQL refuses to run as root \
         (install the postgresql package, which creates the user)"
    )]
    NoPostgresUser,

    /// A file the operation needs does not exist.
    #[error("{what} not found at {}", path.display())]
    Missing { what: &'static str, path: PathBuf },

    /// A system call (signal, user lookup) failed.
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::errno::Errno,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn sys(context: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Error {
        let context = context.into();
        move |source| Error::Sys { context, source }
    }

    /// The server exited because its port was taken between picking and binding it.
    pub(crate) fn is_port_conflict(&self) -> bool {
        // Redis and PostgreSQL say "Address already in use", Go servers "address already in use".
        matches!(self, Error::ServerExited { log_tail, .. }
            if log_tail.to_ascii_lowercase().contains("address already in use"))
    }
}
