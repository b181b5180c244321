//! Where the servers keep their files: `<temp dir>/cache-demo-testkit/<kind>-<pid>-<random>/`.
//!
//! The owning pid is in the name because the shared servers live in statics, which are never
//! dropped: their directories outlive the process, and the next process removes them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::{Gid, Pid, Uid};
use tempfile::TempDir;

use crate::Error;

/// Kinds of server directory, the first part of each name.
const KINDS: [&str; 4] = ["pg", "redis", "prometheus", "exporter"];

/// `<temp dir>/cache-demo-testkit`, the parent of every server directory.
pub fn base_dir() -> PathBuf {
    std::env::temp_dir().join("cache-demo-testkit")
}

/// Creates a fresh server directory owned by this process (its pid in the name), or by
/// `owner` when given (PostgreSQL run as the `postgres` user).
///
/// The first call in a process also removes directories left behind by dead processes.
pub(crate) fn create(kind: &str, owner: Option<(Uid, Gid)>) -> Result<TempDir, Error> {
    static CLEAN_ONCE: Once = Once::new();

    let base = base_dir();
    match fs::create_dir(&base) {
        // World-writable and sticky, like /tmp: root and ordinary users may share it, and the
        // `postgres` user must be able to traverse it.
        Ok(()) => fs::set_permissions(&base, fs::Permissions::from_mode(0o1777))
            .map_err(Error::io(format!("chmod {}", base.display())))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {}", base.display()))(e)),
    }
    CLEAN_ONCE.call_once(|| {
        // Best effort: a directory we cannot remove now is retried by the next process.
        let _ = remove_stale_dirs();
    });

    let dir = tempfile::Builder::new()
        .prefix(&format!("{kind}-{}-", std::process::id()))
        .tempdir_in(&base)
        .map_err(Error::io(format!("creating a directory in {}", base.display())))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir.path(), Some(uid.as_raw()), Some(gid.as_raw()))
            .map_err(Error::io(format!("chown {} to uid {uid}", dir.path().display())))?;
    }
    Ok(dir)
}

/// Removes server directories whose owning process no longer exists; returns how many.
///
/// Runs automatically at the first server start of each process. Never touches a directory
/// whose pid is alive (or might be: only "no such process" counts as dead).
pub fn remove_stale_dirs() -> Result<usize, Error> {
    let base = base_dir();
    let entries = match fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("reading {}", base.display()))(e)),
    };
    let own_pid = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        if kill(Pid::from_raw(raw), None) != Err(Errno::ESRCH) {
            continue;
        }
        remove_orphaned_pg_shm(&entry.path());
        if fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the small System V shared memory segment of a killed postmaster.
///
/// PostgreSQL removes it on shutdown, but a SIGKILLed postmaster (how the shared servers end
/// when their process is killed) leaves it behind, and the kernel allows only a few thousand.
/// `data/postmaster.pid` names it; it is removed only if that postmaster created it and nothing
/// is attached to it anymore.
fn remove_orphaned_pg_shm(dir: &Path) {
    use nix::libc;

    let Ok(pidfile) = fs::read_to_string(dir.join("data").join("postmaster.pid")) else {
        return;
    };
    let lines: Vec<&str> = pidfile.lines().collect();
    // Line 1: postmaster pid; line 7: "<shm key> <shm id>".
    let Some(postmaster) = lines.first().and_then(|l| l.trim().parse::<libc::pid_t>().ok()) else {
        return;
    };
    let Some(shmid) =
        lines.get(6).and_then(|l| l.split_whitespace().nth(1)).and_then(|id| id.parse::<libc::c_int>().ok())
    else {
        return;
    };
    // SAFETY: shmid_ds is plain data; IPC_STAT fills it, IPC_RMID takes no buffer.
    unsafe {
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        if libc::shmctl(shmid, libc::IPC_STAT, &mut ds) == 0 && ds.shm_cpid == postmaster && ds.shm_nattch == 0 {
            libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// The pid in a server directory name `<kind>-<pid>-<random>`.
fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.splitn(3, '-');
    let kind = parts.next()?;
    let pid = parts.next()?;
    parts.next()?;
    if !KINDS.contains(&kind) {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid > 0)
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_reads_only_server_directory_names() {
        assert_eq!(owner_pid("pg-1234-a1B2c3"), Some(1234));
        assert_eq!(owner_pid("redis-99-x"), Some(99));
        assert_eq!(owner_pid("pg-1234"), None);
        assert_eq!(owner_pid("other-1234-x"), None);
        assert_eq!(owner_pid("pg-abc-x"), None);
        assert_eq!(owner_pid("pg-0-x"), None);
    }
}
