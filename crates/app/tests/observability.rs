//! The observability pack on a real Prometheus: the `cache-demo` binary on throwaway PostgreSQL and Redis,
//! redis_exporter, and Prometheus scraping both every second with `observability/prometheus/cache-demo.rules.yml`
//! loaded. A short, bounded load later, the recorded hit ratio must agree with `/api/stats`, and every query of
//! the Grafana dashboard must parse and (with the exceptions named below) return data.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cache_demo_testkit::{PrometheusOptions, PrometheusServer, RedisExporter, ScrapeJob, die_with_parent, rules_path};
use serde_json::Value;

const APP_JOB: &str = "cache-demo";
const REDIS_JOB: &str = "redis";
/// What `$__rate_interval` and `$__range` become: wide enough for the whole run, with 1 s scrapes.
const WINDOW: &str = "1m";
/// Dashboard queries that may rightly return nothing in this run, and why.
const MAY_BE_EMPTY: &[(&str, &str)] = &[(r#"status=~"5..""#, "a healthy run answers no 5xx")];

/// The `cache-demo` binary of this package, killed when dropped.
struct AppProcess {
    base: String,
    addr: String,
    log: PathBuf,
    _child: tokio::process::Child,
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

impl AppProcess {
    async fn start(database_url: &str, redis_url: &str) -> AppProcess {
        let log = std::env::temp_dir().join(format!("cache-demo-observability-{}.log", std::process::id()));
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").to_string()
        };
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cache-demo"));
        cmd.env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url)
            .env("LISTEN_ADDR", &addr)
            .env("CACHE_PREFIX", common::unique_prefix())
            // Misses slow enough that concurrent ones of one key surely share a query (single-flight).
            .env("DB_DELAY_MS", "100")
            .env("WARM_ON_START", "false")
            .env("L1_ENABLED", "false")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true);
        die_with_parent(cmd.as_std_mut());
        let child = cmd.spawn().expect("start cache-demo");
        let app = AppProcess { base: format!("http://{addr}"), addr, log, _child: child };
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/readyz", app.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return app;
            }
            assert!(Instant::now() < deadline, "cache-demo did not become ready:\n{}", app.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().expect("http client")
}

/// Prometheus' HTTP API.
struct Api {
    client: reqwest::Client,
    url: String,
}

impl Api {
    /// `GET /api/v1/query?query=..`: the result vector, or the error Prometheus gives.
    async fn query(&self, query: &str) -> Result<Vec<Value>, String> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of a query that returns exactly one sample.
    async fn scalar(&self, query: &str) -> Option<f64> {
        match self.query(query).await.ok()?.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Polls (every 200 ms, at most `timeout`) until `accept` takes the single value of `query`.
    async fn wait_for(&self, query: &str, timeout: Duration, accept: impl Fn(f64) -> bool) -> Option<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.scalar(query).await;
            if value.is_some_and(&accept) || Instant::now() >= deadline {
                return value.filter(|v| accept(*v));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Every `expr` of every panel (rows included) of the dashboard, with the panel's title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every `datasource` object anywhere in the dashboard.
fn datasources(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "datasource" && v.is_object() {
                    out.push(v.clone());
                }
                datasources(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| datasources(v, out)),
        _ => {}
    }
}

fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../observability/grafana/cache-demo.json")
}

#[test]
fn the_dashboard_is_importable_with_any_prometheus_data_source() {
    let text = std::fs::read_to_string(dashboard_path()).expect("dashboard file");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        dashboard["schemaVersion"]
    );
    let vars = dashboard["templating"]["list"].as_array().expect("template variables");
    let datasource = vars.iter().find(|v| v["name"] == "datasource").expect("a datasource variable");
    assert_eq!((datasource["type"].as_str(), datasource["query"].as_str()), (Some("datasource"), Some("prometheus")));

    let mut refs = Vec::new();
    datasources(&dashboard, &mut refs);
    let grafana_builtin = serde_json::json!({"type": "grafana", "uid": "-- Grafana --"});
    for r in &refs {
        let ours = r["type"] == "prometheus" && r["uid"] == "${datasource}";
        assert!(ours || *r == grafana_builtin, "a data source other than ${{datasource}}: {r}");
    }
    assert!(refs.len() > 20, "every panel, target and variable names its data source ({} found)", refs.len());

    let mut ids: Vec<u64> = dashboard["panels"].as_array().unwrap().iter().filter_map(|p| p["id"].as_u64()).collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "panel ids are unique");
    for wanted in ["hit ratio", "outcome", "p50", "database queries", "maxmemory", "evict", "keys", "breaker"] {
        let found = dashboard_queries(&dashboard).iter().any(|(title, _)| title.to_lowercase().contains(wanted))
            || text.to_lowercase().contains(&format!("\"title\": \"{wanted}"));
        assert!(found, "no panel about {wanted}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_agrees_with_the_app_and_every_dashboard_query_works() {
    let started = Instant::now();
    let pg = common::shared_pg().await;
    let redis = common::shared_redis().await;
    let (db_url, _) = common::fresh_db(pg).await;
    let app = AppProcess::start(&db_url, &redis.url()).await;
    let app_addr = app.addr.clone();
    let (exporter, prometheus) = tokio::task::spawn_blocking(move || {
        let exporter = RedisExporter::start(redis).expect("start redis_exporter");
        let prometheus = PrometheusServer::start(PrometheusOptions {
            jobs: vec![ScrapeJob::new(APP_JOB, app_addr), ScrapeJob::new(REDIS_JOB, exporter.address())],
            rule_files: vec![rules_path()],
            ..PrometheusOptions::default()
        })
        .expect("start Prometheus");
        (exporter, prometheus)
    })
    .await
    .expect("join");
    let api = Api { client: http_client(), url: prometheus.url() };

    // Both targets scraped before any traffic, so every counter's first sample is its zero.
    for job in [APP_JOB, REDIS_JOB] {
        let up = api.wait_for(&format!("up{{job=\"{job}\"}}"), Duration::from_secs(15), |v| v == 1.0).await;
        assert!(
            up.is_some(),
            "Prometheus does not scrape {job}; log:\n{}",
            std::fs::read_to_string(prometheus.log_path()).unwrap_or_default()
        );
    }
    let lookups_scraped = api
        .wait_for(&format!("count(cache_requests_total{{job=\"{APP_JOB}\"}})"), Duration::from_secs(10), |v| v > 0.0)
        .await;
    assert!(lookups_scraped.is_some(), "no cache_requests_total scraped");

    // The load: 20 products missed once then hit 3 times, 8 concurrent misses of one key (single-flight), a few
    // hits and bypasses, a write (invalidation) and its re-read: 100 requests. Whether a late one of the 8 still
    // coalesces or already hits, the hit rate stays between 69% and 77%.
    let client = http_client();
    let get = |path: String| {
        let (client, base) = (client.clone(), app.base.clone());
        async move {
            let r = client.get(format!("{base}{path}")).send().await.expect("GET");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        }
    };
    for round in 0..4 {
        for id in 1..=20 {
            let x_cache = get(format!("/api/products/{id}")).await;
            assert_eq!(x_cache, if round == 0 { "MISS" } else { "HIT" }, "product {id}, round {round}");
        }
    }
    let concurrent: Vec<_> = (0..8).map(|_| tokio::spawn(get("/api/categories".into()))).collect();
    for request in concurrent {
        request.await.expect("join");
    }
    for _ in 0..5 {
        get("/api/categories".into()).await;
        get("/api/products/21?cache=off".into()).await;
    }
    let write = client
        .put(format!("{}/api/products/1", app.base))
        .header("content-type", "application/json")
        .body(r#"{"stock": 7}"#)
        .send()
        .await
        .expect("PUT");
    assert!(write.status().is_success(), "PUT: {}", write.status());
    assert_eq!(get("/api/products/1".into()).await, "MISS", "the write invalidated product 1");

    let stats: Value =
        client.get(format!("{}/api/stats", app.base)).send().await.expect("stats").json().await.expect("JSON");
    let counters = &stats; // hits, misses, bypasses, errors and hit_rate at the top level
    let total: f64 = ["hits", "misses", "bypasses", "errors"].iter().map(|k| counters[k].as_f64().unwrap_or(0.0)).sum();
    let hit_rate = counters["hit_rate"].as_f64().expect("hit_rate");
    assert!((0.5..0.8).contains(&hit_rate), "the load aims at a hit rate between 50% and 80%: {hit_rate}");

    // Prometheus has scraped everything, then evaluated the rules on it.
    let scraped = api
        .wait_for(&format!("sum(cache_requests_total{{job=\"{APP_JOB}\"}})"), Duration::from_secs(15), |v| v == total)
        .await;
    assert!(scraped.is_some(), "Prometheus never saw all {total} requests");
    let caught_up = api.scalar("vector(time())").await.expect("time()");
    let recorded_after = api
        .wait_for(
            &format!("timestamp(job:cache_hit_ratio:ratio_rate5m{{job=\"{APP_JOB}\"}})"),
            Duration::from_secs(15),
            |t| t > caught_up + 1.0,
        )
        .await;
    assert!(recorded_after.is_some(), "the hit-ratio recording rule was not evaluated after the load");
    let recorded = api.scalar(&format!("job:cache_hit_ratio:ratio_rate5m{{job=\"{APP_JOB}\"}}")).await.expect("ratio");
    assert!((recorded - hit_rate).abs() <= 0.03, "recorded hit ratio {recorded}, /api/stats {hit_rate}");

    // The same data drives the alert: below 80% with traffic, CacheDemoHitRatioLow is pending (it fires only
    // after 10 minutes).
    let pending = api
        .wait_for(
            r#"count(ALERTS{alertname="CacheDemoHitRatioLow",alertstate="pending",job="cache-demo"})"#,
            Duration::from_secs(10),
            |v| v == 1.0,
        )
        .await;
    assert!(pending.is_some(), "CacheDemoHitRatioLow is not pending at a hit ratio of {recorded}");
    let firing = api.query(r#"ALERTS{alertstate="firing"}"#).await.expect("ALERTS");
    assert!(firing.is_empty(), "alerts fire in a healthy run: {firing:?}");
    let rules: Value =
        client.get(format!("{}/api/v1/rules", api.url)).send().await.expect("rules").json().await.expect("JSON");
    for group in rules["data"]["groups"].as_array().expect("rule groups") {
        for rule in group["rules"].as_array().expect("rules") {
            assert_eq!(rule["health"], "ok", "rule {} of {}: {}", rule["name"], group["name"], rule["lastError"]);
        }
    }

    // Every dashboard query, with Grafana's variables filled in as the dashboard would.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).expect("dashboard")).expect("JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "{} queries", queries.len());
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        let promql = expr
            .replace("$__rate_interval", WINDOW)
            .replace("$__range", WINDOW)
            .replace("$redis_job", REDIS_JOB)
            .replace("$job", APP_JOB);
        assert!(!promql.contains('$'), "an unknown variable in {title}: {expr}");
        let result = api.query(&promql).await.unwrap_or_else(|e| panic!("{title}: {promql}: {e}"));
        if title.starts_with("Hit ratio") {
            let shown = result.first().and_then(|r| r["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok());
            assert!(
                shown.is_some_and(|v| (v - hit_rate).abs() <= 0.03),
                "{title} shows {shown:?}, /api/stats {hit_rate}"
            );
        }
        if result.is_empty() {
            empty.push((title, expr));
        }
    }
    eprintln!(
        "hit ratio: recorded {recorded:.4}, /api/stats {hit_rate:.4}; {} dashboard queries, {} without data",
        queries.len(),
        empty.len()
    );
    for (title, expr) in &empty {
        let excused = MAY_BE_EMPTY.iter().any(|(part, _)| expr.contains(part));
        assert!(excused, "no data for {title}: {expr}");
    }

    drop(prometheus);
    drop(exporter);
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
