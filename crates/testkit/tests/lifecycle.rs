//! Servers must not outlive the process that started them, even though the shared ones are
//! never dropped.
//!
//! These tests re-run this test binary as a helper process that starts servers (the shared ones
//! in statics, and an owned one it never drops), then either SIGKILL it or let it exit.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::Duration;

use cache_demo_testkit::{RedisOptions, RedisServer, remove_stale_dirs, shared_pg, shared_redis};

/// Set to "wait" (sleep until killed) or "exit" (return at once) to run the helper.
const HELPER_ENV: &str = "CACHE_DEMO_TESTKIT_HELPER";
const HELPER_TEST: &str = "helper_starts_servers";
const REPORT_PREFIX: &str = "TESTKIT-SERVERS";

#[test]
#[ignore = "helper process for the other tests in this file"]
fn helper_starts_servers() {
    let Some(mode) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let pg = shared_pg();
    let redis = shared_redis();
    let owned = RedisServer::start(RedisOptions::default()).unwrap();
    println!(
        "{REPORT_PREFIX} {} {} {} {} {} {}",
        pg.pid().unwrap(),
        redis.pid().unwrap(),
        owned.pid().unwrap(),
        pg.dir().display(),
        redis.dir().display(),
        owned.dir().display(),
    );
    if mode == "wait" {
        // Killed by the test long before this ends.
        thread::sleep(Duration::from_secs(120));
    }
    // Never dropped, like a server in a static.
    std::mem::forget(owned);
}

/// What the helper started: server pids (shared PostgreSQL, shared Redis, owned Redis) and
/// their directories.
struct Report {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

fn start_helper(mode: &str) -> (Child, Report) {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([HELPER_TEST, "--exact", "--ignored", "--nocapture"])
        .env(HELPER_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test <name> ... " before it on the same line.
            if let Some((_, report)) = line.split_once(REPORT_PREFIX) {
                let words: Vec<String> = report.split_whitespace().map(String::from).collect();
                let _ = tx.send(words);
            }
        }
    });
    let words = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(words) => words,
        Err(e) => {
            let _ = helper.kill();
            let _ = helper.wait();
            panic!("the helper did not report its servers: {e}");
        }
    };
    let report = Report {
        pids: words[..3].iter().map(|p| p.parse().unwrap()).collect(),
        dirs: words[3..].iter().map(PathBuf::from).collect(),
    };
    (helper, report)
}

/// These tests remove stale directories, which other tests here create on purpose.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn assert_processes_gone(pids: &[u32]) {
    for &pid in pids {
        assert!(
            common::eventually(Duration::from_secs(10), || common::process_is_gone(pid)),
            "server process {pid} outlived its owner"
        );
    }
}

#[test]
fn servers_die_with_a_killed_owner_and_their_dirs_are_cleaned_later() {
    let _serial = serial();
    let (mut helper, report) = start_helper("wait");
    helper.kill().unwrap();
    helper.wait().unwrap();

    assert_processes_gone(&report.pids);
    // Nothing was dropped: the directories stay until a cleanup (here, or any later process).
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let _ = remove_stale_dirs();
            report.dirs.iter().all(|d| !d.exists())
        }),
        "stale directories were not removed: {:?}",
        report.dirs
    );
}

#[test]
fn shared_servers_are_stopped_and_cleaned_when_the_owner_exits_normally() {
    let _serial = serial();
    let (mut helper, report) = start_helper("exit");
    let status = common::eventually(Duration::from_secs(30), || helper.try_wait().unwrap().is_some());
    assert!(status, "the helper did not exit");

    // The exit hook stopped *and reaped* the shared servers before the helper exited (killed
    // by the parent-death signal instead, they would linger as zombies of init for a moment).
    for pid in &report.pids[..2] {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{pid} not reaped");
    }
    assert!(!report.dirs[0].exists(), "{}", report.dirs[0].display());
    assert!(!report.dirs[1].exists(), "{}", report.dirs[1].display());
    // The owned, never-dropped server died with the helper; its directory is stale.
    assert_processes_gone(&report.pids[2..]);
    remove_stale_dirs().unwrap();
    assert!(!report.dirs[2].exists());
}

#[test]
fn stale_cleanup_keeps_directories_of_live_processes() {
    let _serial = serial();
    let redis = shared_redis();
    remove_stale_dirs().unwrap();
    assert!(redis.dir().exists());
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");
}
