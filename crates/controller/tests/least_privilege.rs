//! The startup scripts the builders give PostgreSQL and Redis, run for real on this machine: Redis gets its
//! passwords and the app's ACL user from the environment (none in any argv) and the app's user can do only what
//! least-privilege/ allows; the postgres image's app-role script creates the app's role with the grants of
//! least-privilege/app-role.sql, the password read by psql from the environment.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cache_demo_ctl::objects::{APP_ROLE_SCRIPT_KEY, init_sql_config_map, redis_args, redis_command};
use cache_demo_ctl::settings::Settings;

const DEFAULT_PASSWORD: &str = "person0password";
const APP_PASSWORD: &str = "app0password";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cli(port: u16, user: Option<(&str, &str)>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--no-auth-warning"]);
    match user {
        Some((name, password)) => cmd.args(["--user", name, "--pass", password]),
        None => cmd.env("REDISCLI_AUTH", DEFAULT_PASSWORD),
    };
    let out = cmd.args(args).output().expect("redis-cli");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_owned()
}

#[test]
fn redis_starts_with_both_users_and_no_password_in_argv() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = redis_command();
    // The pod's volume is /data; here a temp dir.
    command[2] = command[2].replace("/data/", &format!("{}/", dir.path().display()));
    let mut args = redis_args(&Settings::default());
    args.extend(["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into()]);
    args.extend(["--dir".into(), dir.path().display().to_string()]);
    let child = Command::new(&command[0])
        .args(&command[1..])
        .args(&args)
        .env("REDIS_PASSWORD", DEFAULT_PASSWORD)
        .env("APP_REDIS_PASSWORD", APP_PASSWORD)
        .stdout(Stdio::null())
        .spawn()
        .expect("sh");
    let server = Killed(child);
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        cli(port, None, &["PING"]) == "PONG"
    });
    assert!(ready, "redis did not start with the builders' command");

    // What a person does with `kubectl exec deploy/redis -- redis-cli` (REDISCLI_AUTH: the default user).
    assert_eq!(cli(port, None, &["CONFIG", "GET", "maxmemory"]).lines().last(), Some("67108864"));
    assert_eq!(cli(port, None, &["SET", "anything", "x"]), "OK");
    // The app's user: its prefix and commands only.
    let app = Some(("cache-demo", APP_PASSWORD));
    assert_eq!(cli(port, app, &["SET", "cache-demo:k", "v"]), "OK");
    assert_eq!(cli(port, app, &["GET", "cache-demo:k"]), "v");
    assert!(cli(port, app, &["GET", "anything"]).contains("NOPERM"));
    assert!(cli(port, app, &["FLUSHALL"]).contains("NOPERM"));
    assert!(cli(port, Some(("cache-demo", "wrong")), &["PING"]).contains("WRONGPASS"));

    // No password in the server's command line.
    let pid = server.0.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("redis-server"), "{cmdline}");
    assert!(!cmdline.contains(DEFAULT_PASSWORD) && !cmdline.contains(APP_PASSWORD), "{cmdline}");
}

#[test]
fn the_postgres_app_role_script_creates_the_role_with_its_grants() {
    let pg = cache_demo_testkit::shared_pg();
    let url = cache_demo_testkit::fresh_database(pg).unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let script = init_sql_config_map(&Settings::default()).data.unwrap()[APP_ROLE_SCRIPT_KEY].clone();
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("POSTGRES_USER", "postgres")
        .env("POSTGRES_DB", &db)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("APP_DB_PASSWORD", APP_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let as_app = |sql: &str| pg.psql(&db, &format!("SET ROLE cache_demo_app; {sql}"));
    assert!(as_app("SELECT count(*) FROM products").is_ok());
    assert!(as_app("UPDATE products SET stock = stock WHERE id = 1").is_ok());
    assert!(format!("{:?}", as_app("UPDATE categories SET name = name")).contains("permission denied"));
    let stored = pg.psql(&db, "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'cache_demo_app'");
    assert_eq!(stored.unwrap(), "t", "the role got its password");
}
