//! Helpers shared by the integration tests.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Polls `condition` every 20 ms for up to `timeout`; true as soon as it holds.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True if process `pid` no longer runs: no `/proc/<pid>`, or only a zombie waiting for a
/// parent (other than us) to reap it.
pub fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => process_state(&stat) == Some('Z'),
    }
}

/// The state letter of `/proc/<pid>/stat` (after the parenthesised command name).
pub fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Asserts `pid` is gone and `dir` removed, within a few seconds.
#[allow(dead_code)] // not every test binary uses it
pub fn assert_process_and_dir_gone(pid: u32, dir: &Path) {
    assert!(eventually(Duration::from_secs(10), || process_is_gone(pid)), "process {pid} still runs");
    assert!(!dir.exists(), "{} still exists", dir.display());
}
