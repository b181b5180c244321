//! RedisServer against a real redis-server, including the faults tests inject.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::Duration;

use cache_demo_testkit::{RedisOptions, RedisServer, shared_redis};

fn with_password(password: &str) -> RedisOptions {
    RedisOptions { password: Some(password.into()), ..RedisOptions::default() }
}

#[test]
fn shared_server_answers_ping_with_default_options() {
    let redis = shared_redis();
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert_eq!(redis.cli(&["CONFIG", "GET", "maxmemory-policy"]).unwrap(), "maxmemory-policy\nallkeys-lru");
    assert_eq!(redis.cli(&["CONFIG", "GET", "maxmemory"]).unwrap(), format!("maxmemory\n{}", 64 * 1024 * 1024));
}

#[test]
fn cli_reports_error_replies() {
    let err = shared_redis().cli(&["NO-SUCH-COMMAND"]).unwrap_err();
    assert!(err.to_string().contains("unknown command"), "{err}");
}

#[test]
fn password_is_required_and_used_by_url_and_cli() {
    let redis = RedisServer::start(with_password("s3cret/pw")).unwrap();
    assert_eq!(redis.url(), format!("redis://:s3cret%2Fpw@127.0.0.1:{}/", redis.port()));
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");

    let unauthenticated =
        Command::new("redis-cli").args(["-e", "-p", &redis.port().to_string(), "PING"]).output().unwrap();
    assert!(!unauthenticated.status.success());
    assert!(String::from_utf8_lossy(&unauthenticated.stderr).contains("NOAUTH"));
}

#[test]
fn kill_then_restart_comes_back_empty_on_the_same_port() {
    let mut redis = RedisServer::start(RedisOptions::default()).unwrap();
    let port = redis.port();
    redis.cli(&["SET", "k", "v"]).unwrap();

    redis.kill().unwrap();
    assert!(!redis.is_running());
    assert!(redis.cli(&["PING"]).is_err());

    redis.restart().unwrap();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");
    assert_eq!(redis.cli(&["EXISTS", "k"]).unwrap(), "0");
}

#[test]
fn paused_server_answers_nothing_until_resumed() {
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let mut conn = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();

    redis.pause().unwrap();
    let stat = format!("/proc/{}/stat", redis.pid().unwrap());
    let stopped = || std::fs::read_to_string(&stat).is_ok_and(|s| common::process_state(&s) == Some('T'));
    // Signal delivery is asynchronous.
    assert!(common::eventually(Duration::from_secs(2), stopped), "not stopped");
    conn.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 16];
    let err = conn.read(&mut buf).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err:?}");

    redis.resume().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = conn.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
}

#[test]
fn server_started_on_a_short_lived_thread_outlives_that_thread() {
    // PR_SET_PDEATHSIG follows the forking thread: this checks servers are not forked by it.
    let redis = thread::spawn(|| RedisServer::start(RedisOptions::default())).join().unwrap().unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");
}

#[test]
fn dropping_kills_the_server_and_removes_its_directory() {
    let redis = RedisServer::start(with_password("pw")).unwrap();
    let pid = redis.pid().unwrap();
    let dir = redis.dir().to_owned();
    redis.pause().unwrap();

    drop(redis);
    common::assert_process_and_dir_gone(pid, &dir);
}
