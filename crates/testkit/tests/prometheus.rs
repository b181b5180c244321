//! The repository's Prometheus rules through promtool, and PrometheusServer / RedisExporter against real
//! `prometheus`, `prometheus-redis-exporter` and `redis-server` processes.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use cache_demo_testkit::{
    PrometheusOptions, PrometheusServer, RedisExporter, RedisOptions, RedisServer, ScrapeJob, http_get, promtool,
    rules_path,
};

fn rules_test_path() -> PathBuf {
    rules_path().with_file_name("cache-demo.rules.test.yml")
}

/// The body of `GET /api/v1/query?query=<query>` (only URL-safe queries).
fn query(prometheus: &PrometheusServer, query: &str) -> String {
    assert!(query.chars().all(|c| c.is_ascii_alphanumeric() || "_:".contains(c)), "not URL-safe: {query}");
    let (status, body) =
        http_get(prometheus.port(), &format!("/api/v1/query?query={query}")).expect("Prometheus answers");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn the_rules_file_is_valid_for_promtool() {
    let out =
        promtool(&[PathBuf::from("check"), "rules".into(), "--lint=all".into(), "--lint-fatal".into(), rules_path()])
            .unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_fires_and_stays_quiet_in_the_rules_unit_tests() {
    // Each alert has a test case here; promtool fails on any difference in labels, annotations or values.
    let tests = std::fs::read_to_string(rules_test_path()).unwrap();
    let rules = std::fs::read_to_string(rules_path()).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}\n")), "no unit test for {alert}");
    }
    let out = promtool(&[PathBuf::from("test"), "rules".into(), rules_test_path()]).unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_failures_carry_its_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: sum(\n").unwrap();
    let err = promtool(&[PathBuf::from("check"), "rules".into(), broken]).unwrap_err();
    assert!(err.to_string().contains("parse error"), "{err}");
}

#[test]
fn prometheus_scrapes_the_exporter_evaluates_the_rules_and_is_removed_on_drop() {
    let mut redis = RedisServer::start(RedisOptions::default()).unwrap();
    let exporter = RedisExporter::start(&redis).unwrap();
    let prometheus = PrometheusServer::start(PrometheusOptions {
        jobs: vec![ScrapeJob::new("redis", exporter.address())],
        rule_files: vec![rules_path()],
        ..PrometheusOptions::default()
    })
    .unwrap();
    assert!(prometheus.url().starts_with("http://127.0.0.1:"));

    let (_, rules) = http_get(prometheus.port(), "/api/v1/rules").unwrap();
    assert!(rules.contains("\"name\":\"cache-demo.alerts\"") && rules.contains("CacheDemoRedisDown"), "{rules}");
    assert!(!rules.contains("\"health\":\"err\""), "a rule fails to evaluate: {rules}");
    let memory_ratio_known = common::eventually(Duration::from_secs(15), || {
        let body = query(&prometheus, "redis_memory_max_bytes");
        body.contains("\"job\":\"redis\"") && body.contains("\"67108864\"")
    });
    assert!(memory_ratio_known, "{}", query(&prometheus, "redis_memory_max_bytes"));

    // Redis gone: the exporter keeps answering, with redis_up 0, and the alert goes pending (it fires after 1m).
    redis.kill().unwrap();
    let down = common::eventually(Duration::from_secs(15), || {
        http_get(exporter.port(), "/metrics").is_some_and(|(_, body)| body.lines().any(|l| l == "redis_up 0"))
    });
    assert!(down, "redis_exporter did not report Redis down");
    let pending = common::eventually(Duration::from_secs(15), || {
        let (_, alerts) = http_get(prometheus.port(), "/api/v1/alerts").unwrap_or_default();
        alerts.contains("\"alertname\":\"CacheDemoRedisDown\"") && alerts.contains("\"state\":\"pending\"")
    });
    assert!(pending, "{}", http_get(prometheus.port(), "/api/v1/alerts").unwrap_or_default().1);

    let (pid, config) = (prometheus.pid().unwrap(), prometheus.config_path());
    let dir = config.parent().unwrap().to_path_buf();
    assert!(std::fs::read_to_string(&config).unwrap().contains(&exporter.address()));
    drop(prometheus);
    common::assert_process_and_dir_gone(pid, &dir);
    let pid = exporter.pid().unwrap();
    let dir = exporter.log_path().parent().unwrap().to_path_buf();
    drop(exporter);
    common::assert_process_and_dir_gone(pid, &dir);
}

#[test]
fn a_rule_file_that_does_not_load_fails_the_start_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n").unwrap();
    let err = PrometheusServer::start(PrometheusOptions { rule_files: vec![broken], ..PrometheusOptions::default() })
        .unwrap_err();
    assert!(err.to_string().contains("exited during startup"), "{err}");
    assert!(err.to_string().contains("broken.yml"), "{err}");
}
