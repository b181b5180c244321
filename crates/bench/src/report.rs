//! The results of a bench run, the bar they are held to, and their Markdown rendering (JSON is the same
//! structure, serialized).

use std::fmt::Write as _;

use serde::Serialize;

use crate::app::{Delta, L1State};
use crate::load::{LoadResult, XCacheCounts};
use crate::summary::{Latency, per_second, ratio, reduction_pct};
use crate::workload::{CacheMode, Endpoint};

/// One measured run, summarized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStats {
    pub endpoint: Endpoint,
    pub cache: CacheMode,
    pub concurrency: usize,
    pub write_ratio: f64,
    pub elapsed_s: f64,
    /// Requests answered (any status), reads and writes.
    pub requests: u64,
    /// Non-2xx answers plus requests without an answer.
    pub errors: u64,
    pub requests_per_s: f64,
    /// Client-side time of the reads.
    pub latency: Option<Latency>,
    /// `Server-Timing` of the reads: total, Redis, PostgreSQL.
    pub server: Option<Latency>,
    pub server_redis: Option<Latency>,
    pub server_db: Option<Latency>,
    /// Client-side time of the writes.
    pub writes: Option<Latency>,
    pub x_cache: XCacheCounts,
    /// hits / (hits + misses + errors) from `/api/stats` deltas over the run.
    pub hit_ratio: Option<f64>,
    /// PostgreSQL queries per second from `db_query_duration_seconds_count` deltas over the run.
    pub db_queries_per_s: Option<f64>,
    pub evicted_keys: Option<u64>,
    /// CPU time of the app process per request answered, in microseconds (an app the bench started only):
    /// what a request costs the server, whatever the load generator costs.
    pub app_cpu_us_per_request: Option<f64>,
    pub first_error: Option<String>,
}

impl RunStats {
    /// `r` measured while the app changed by `d`.
    pub fn new(
        endpoint: Endpoint,
        cache: CacheMode,
        concurrency: usize,
        write_ratio: f64,
        r: &LoadResult,
        d: &Delta,
    ) -> RunStats {
        let secs = r.elapsed.as_secs_f64();
        let cpu = d.cpu_seconds.filter(|_| r.answered() > 0).map(|c| c * 1e6 / r.answered() as f64);
        RunStats {
            endpoint,
            cache,
            concurrency,
            write_ratio,
            elapsed_s: secs,
            requests: r.answered(),
            errors: r.errors(),
            requests_per_s: per_second(r.answered() as f64, secs),
            latency: Latency::from_histogram(&r.reads),
            server: Latency::from_histogram(&r.server_total),
            server_redis: Latency::from_histogram(&r.server_redis),
            server_db: Latency::from_histogram(&r.server_db),
            writes: Latency::from_histogram(&r.writes),
            x_cache: r.x_cache,
            hit_ratio: if endpoint.cacheable() && cache == CacheMode::On { d.counters.hit_ratio() } else { None },
            db_queries_per_s: d.db_queries.map(|q| per_second(q, secs)),
            evicted_keys: d.evicted_keys,
            app_cpu_us_per_request: cpu,
            first_error: r.first_error.clone(),
        }
    }

    fn p50(&self) -> Option<f64> {
        self.latency.map(|l| l.p50_ms)
    }

    fn server_p50(&self) -> Option<f64> {
        self.server.map(|l| l.p50_ms)
    }
}

/// One endpoint from PostgreSQL (`cache=off`) and through the cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub endpoint: Endpoint,
    pub database: Option<RunStats>,
    pub cache: Option<RunStats>,
    pub speedup: Speedup,
}

/// What the cache changed: ratios > 1 are better with the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Speedup {
    pub throughput: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub db_load_reduction_pct: Option<f64>,
}

impl Comparison {
    pub fn new(endpoint: Endpoint, database: Option<RunStats>, cache: Option<RunStats>) -> Comparison {
        let mut speedup = Speedup::default();
        if let (Some(d), Some(c)) = (&database, &cache) {
            speedup.throughput = ratio(c.requests_per_s, d.requests_per_s);
            if let (Some(dl), Some(cl)) = (d.latency, c.latency) {
                speedup.p50 = ratio(dl.p50_ms, cl.p50_ms);
                speedup.p95 = ratio(dl.p95_ms, cl.p95_ms);
                speedup.p99 = ratio(dl.p99_ms, cl.p99_ms);
            }
            if let (Some(dq), Some(cq)) = (d.db_queries_per_s, c.db_queries_per_s) {
                speedup.db_load_reduction_pct = reduction_pct(dq, cq);
            }
        }
        Comparison { endpoint, database, cache, speedup }
    }
}

/// Each product id once from PostgreSQL, once as a miss after a flush, once as a hit; one connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissPath {
    pub database: RunStats,
    pub miss: RunStats,
    pub hit: RunStats,
    /// Server-side p50 of a miss minus that of `cache=off`.
    pub extra_ms: Option<f64>,
    /// One Redis round trip: the p50 of the misses' `redis;dur` (the lookup).
    pub round_trip_ms: Option<f64>,
    /// `extra_ms` in round trips.
    pub round_trips: Option<f64>,
}

impl MissPath {
    pub fn new(database: RunStats, miss: RunStats, hit: RunStats) -> MissPath {
        let extra_ms = match (miss.server_p50(), database.server_p50()) {
            (Some(m), Some(d)) => Some(m - d),
            _ => None,
        };
        let round_trip_ms = miss.server_redis.map(|l| l.p50_ms);
        let round_trips = extra_ms.zip(round_trip_ms).and_then(|(e, rt)| ratio(e, rt));
        MissPath { database, miss, hit, extra_ms, round_trip_ms, round_trips }
    }
}

/// One process of the app and what was measured on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppRun {
    pub name: String,
    pub l1: L1State,
    /// `/healthz` at the same concurrency: the HTTP ceiling of this machine in this run.
    pub ceiling: Option<RunStats>,
    /// Cache hits of `GET /api/products/{id}` after warm-up.
    pub product_hit: Option<RunStats>,
    /// The same hits at fewer connections (the standard scenario's Redis-only app), fewest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_connections: Vec<RunStats>,
    /// `process_resident_memory_bytes` at the end.
    pub rss_bytes: Option<f64>,
}

impl AppRun {
    /// Every hit run of this app, fewest connections first.
    pub fn hit_runs(&self) -> Vec<&RunStats> {
        let mut runs: Vec<&RunStats> = self.by_connections.iter().chain(&self.product_hit).collect();
        runs.sort_by_key(|r| r.concurrency);
        runs
    }

    /// Hit throughput as a fraction of the ceiling.
    pub fn of_ceiling(&self) -> Option<f64> {
        ratio(self.product_hit.as_ref()?.requests_per_s, self.ceiling.as_ref()?.requests_per_s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub build: String,
    pub app: String,
    pub commit: Option<String>,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub scenario: String,
    pub concurrency: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub max_requests: Option<u64>,
    pub distribution: String,
    pub keys: u64,
    pub write_ratio: f64,
    pub db_delay_ms: Option<u64>,
    /// Caching patterns switched on in the (first) app, from `/api/stats`.
    pub patterns: Option<String>,
    pub redis_maxmemory: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    NotMet,
    NotMeasured,
}

impl Status {
    fn from_bool(ok: bool) -> Status {
        if ok { Status::Met } else { Status::NotMet }
    }

    fn word(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::NotMet => "**not met**",
            Status::NotMeasured => "not measured",
        }
    }
}

/// One line of the performance bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub status: Status,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub environment: Environment,
    pub settings: Settings,
    pub endpoints: Vec<Comparison>,
    pub miss_path: Option<MissPath>,
    /// The cached product run (0 % writes) and runs with writes.
    pub write_mix: Vec<RunStats>,
    pub apps: Vec<AppRun>,
    pub bar: Vec<Goal>,
    pub notes: Vec<String>,
}

/// The bar of issue #6, measured. Goals without data are `NotMeasured`, never passed.
pub const HIT_RPS_GOAL: f64 = 20_000.0;
pub const HIT_P99_GOAL_MS: f64 = 5.0;
pub const L1_OF_CEILING_GOAL: f64 = 0.75;
pub const SERVER_HIT_P50_GOAL_MS: f64 = 0.3;
/// What a miss may add over `cache=off`, counted in whole round trips: one round trip plus the app's own work
/// (the key, the generation token, queueing the fill) stays under 1.5; a second round trip (an awaited fill,
/// a second lookup) makes it 2 or more.
pub const MISS_ROUND_TRIPS_GOAL: f64 = 1.5;
pub const RSS_GOAL_BYTES: f64 = 50_000_000.0;

pub fn evaluate_bar(apps: &[AppRun], miss_path: Option<&MissPath>) -> Vec<Goal> {
    let mut bar = Vec::new();
    let redis_only = apps.iter().find(|a| a.l1 != L1State::On);
    let hit = redis_only.and_then(|a| a.product_hit.as_ref());
    let not_measured =
        |goal: &str, why: &str| Goal { goal: goal.into(), measured: why.into(), status: Status::NotMeasured };

    let goal = "Cache hits of `GET /api/products/{id}`, Redis only (L1 off): ≥ 20,000 requests/s";
    bar.push(match hit {
        Some(h) => Goal {
            goal: goal.into(),
            measured: format!("{} requests/s at {} connections", fmt_int(h.requests_per_s), h.concurrency),
            status: Status::from_bool(h.requests_per_s >= HIT_RPS_GOAL),
        },
        None => not_measured(goal, "no Redis-only run"),
    });
    let goal = "… and p99 < 5 ms";
    bar.push(match hit.and_then(|h| h.latency) {
        Some(l) => Goal {
            goal: goal.into(),
            measured: format!("p99 {} ms", fmt_ms(l.p99_ms)),
            status: Status::from_bool(l.p99_ms < HIT_P99_GOAL_MS),
        },
        None => not_measured(goal, "no Redis-only run"),
    });

    let goal = "Cache hits with L1 on: ≥ 75% of the `/healthz` ceiling of the same run";
    bar.push(match apps.iter().find(|a| a.l1 == L1State::On) {
        Some(a) => match a.of_ceiling() {
            Some(f) => Goal {
                goal: goal.into(),
                measured: format!(
                    "{} of {} requests/s = {}",
                    fmt_int(a.product_hit.as_ref().map_or(0.0, |h| h.requests_per_s)),
                    fmt_int(a.ceiling.as_ref().map_or(0.0, |c| c.requests_per_s)),
                    fmt_pct(f * 100.0)
                ),
                status: Status::from_bool(f >= L1_OF_CEILING_GOAL),
            },
            None => not_measured(goal, "the L1 run has no ceiling or hit figures"),
        },
        None => {
            let redis = redis_only.and_then(AppRun::of_ceiling);
            let why = match redis {
                Some(f) => format!("no L1 in this build (Redis only: {} of the ceiling)", fmt_pct(f * 100.0)),
                None => "no L1 in this build".to_owned(),
            };
            not_measured(goal, &why)
        }
    });

    let goal = "Server-side time of a cache hit (`Server-Timing` total), p50 < 0.3 ms, one connection";
    bar.push(match miss_path.and_then(|m| m.hit.server) {
        Some(l) => Goal {
            goal: goal.into(),
            measured: format!("p50 {} ms", fmt_ms(l.p50_ms)),
            status: Status::from_bool(l.p50_ms < SERVER_HIT_P50_GOAL_MS),
        },
        None => not_measured(goal, "no miss-path measurement"),
    });
    let goal = "… and under load: at the lightest load that reaches 20,000 requests/s (Redis only)";
    let hit_runs = redis_only.map(AppRun::hit_runs).unwrap_or_default();
    let busiest = hit_runs.last().copied();
    let at = |r: &RunStats| {
        let p50 = r.server.map_or("–".to_owned(), |l| fmt_ms(l.p50_ms));
        format!("p50 {p50} ms at {} connections ({} requests/s)", r.concurrency, fmt_int(r.requests_per_s))
    };
    bar.push(match hit_runs.iter().find(|r| r.requests_per_s >= HIT_RPS_GOAL && r.server.is_some()) {
        Some(r) => {
            let mut measured = at(r);
            if let Some(b) = busiest.filter(|b| b.concurrency != r.concurrency) {
                measured.push_str(&format!("; {}", at(b)));
            }
            let ok = r.server.is_some_and(|l| l.p50_ms < SERVER_HIT_P50_GOAL_MS);
            Goal { goal: goal.into(), measured, status: Status::from_bool(ok) }
        }
        None => match busiest {
            Some(b) => Goal {
                goal: goal.into(),
                measured: format!("no run reached 20,000 requests/s; {}", at(b)),
                status: Status::NotMet,
            },
            None => not_measured(goal, "no Redis-only run"),
        },
    });

    let goal = "A miss adds at most one Redis round trip over `cache=off` (server-side p50)";
    bar.push(match miss_path.and_then(|m| Some((m.extra_ms?, m.round_trip_ms?, m.round_trips?))) {
        Some((extra, rt, n)) => Goal {
            goal: goal.into(),
            measured: format!("+{} ms = {n:.1} round trips of {} ms (the lookup)", fmt_ms(extra), fmt_ms(rt)),
            status: Status::from_bool(n < MISS_ROUND_TRIPS_GOAL),
        },
        None => not_measured(goal, "no miss-path measurement"),
    });

    let goal = "App resident memory < 50 MB after the standard scenario";
    let rss: Vec<(&str, f64)> = apps.iter().filter_map(|a| Some((a.name.as_str(), a.rss_bytes?))).collect();
    bar.push(if rss.is_empty() {
        not_measured(goal, "`process_resident_memory_bytes` not reported")
    } else {
        let measured = rss.iter().map(|(n, b)| format!("{n}: {}", fmt_mb(*b))).collect::<Vec<_>>().join("; ");
        Goal { goal: goal.into(), measured, status: Status::from_bool(rss.iter().all(|(_, b)| *b < RSS_GOAL_BYTES)) }
    });
    bar
}

// ---------------------------------------------------------------------------------------------------------------
// Formatting

/// `12345.6` → `12,346`.
pub fn fmt_int(v: f64) -> String {
    let n = v.round().abs() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v.round() < 0.0 { format!("-{out}") } else { out }
}

/// Milliseconds with about three significant digits.
pub fn fmt_ms(v: f64) -> String {
    let a = v.abs();
    if a < 1.0 {
        format!("{v:.3}")
    } else if a < 10.0 {
        format!("{v:.2}")
    } else if a < 100.0 {
        format!("{v:.1}")
    } else {
        fmt_int(v)
    }
}

pub fn fmt_pct(v: f64) -> String {
    format!("{v:.1}%")
}

/// A share in percent without needless decimals: `1%`, `2.5%`.
pub fn fmt_share(ratio: f64) -> String {
    let pct = ratio * 100.0;
    if (pct - pct.round()).abs() < 1e-9 { format!("{pct:.0}%") } else { format!("{pct:.1}%") }
}

pub fn fmt_x(v: f64) -> String {
    if v >= 10.0 { format!("{v:.0}×") } else { format!("{v:.1}×") }
}

pub fn fmt_mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1_000_000.0)
}

const NONE: &str = "–";

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| NONE.to_owned(), f)
}

fn table(out: &mut String, header: &[&str], right_from: usize, rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..header.len()).map(|i| if i < right_from { "---" } else { "--:" }).collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn path_label(r: &RunStats) -> &'static str {
    match (r.endpoint, r.cache) {
        (Endpoint::Healthz, _) => "static",
        (_, CacheMode::Off) => "database (`cache=off`)",
        (_, CacheMode::On) => "cache",
    }
}

fn latency_cells(l: Option<Latency>) -> [String; 4] {
    match l {
        Some(l) => [fmt_ms(l.p50_ms), fmt_ms(l.p95_ms), fmt_ms(l.p99_ms), fmt_ms(l.max_ms)],
        None => [NONE.into(), NONE.into(), NONE.into(), NONE.into()],
    }
}

fn run_row(first: String, r: &RunStats) -> Vec<String> {
    let mut row = vec![first, path_label(r).to_owned(), fmt_int(r.requests_per_s)];
    row.extend(latency_cells(r.latency));
    row.push(fmt_int(r.errors as f64));
    row.push(opt(r.db_queries_per_s, fmt_int));
    row.push(opt(r.hit_ratio.map(|h| h * 100.0), fmt_pct));
    row
}

impl Report {
    /// The whole report as Markdown (what `make bench` puts between the markers of `docs/benchmarks.md`).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        self.render_environment(&mut out);
        self.render_endpoints(&mut out);
        self.render_miss_path(&mut out);
        self.render_write_mix(&mut out);
        self.render_apps(&mut out);
        self.render_by_connections(&mut out);
        self.render_bar(&mut out);
        self.render_notes(&mut out);
        self.render_reading(&mut out);
        out.truncate(out.trim_end().len());
        out
    }

    fn render_environment(&self, out: &mut String) {
        let (e, s) = (&self.environment, &self.settings);
        let mut load = format!("{} connections, {} s per run", s.concurrency, s.duration_s);
        if s.warmup_s > 0.0 {
            let _ = write!(load, " after {} s of warm-up", s.warmup_s);
        }
        if let Some(n) = s.max_requests {
            let _ = write!(load, ", at most {} requests", fmt_int(n as f64));
        }
        let _ = write!(load, "; keys: {} over {}", s.distribution, s.keys);
        if s.write_ratio > 0.0 {
            let _ = write!(load, "; {} writes", fmt_share(s.write_ratio));
        }
        let mut app = e.app.clone();
        if let Some(c) = &e.commit {
            let _ = write!(app, ", commit {c}");
        }
        let mut rows = vec![
            vec!["date".into(), e.date.clone()],
            vec!["cores (nproc)".into(), e.cores.to_string()],
            vec!["CPU".into(), e.cpu.clone()],
            vec!["build".into(), e.build.clone()],
            vec!["app".into(), app],
            vec!["target".into(), e.target.clone()],
            vec![format!("load (`{}`)", s.scenario), load],
        ];
        if let Some(d) = s.db_delay_ms {
            rows.push(vec!["`DB_DELAY_MS`".into(), d.to_string()]);
        }
        if let Some(p) = &s.patterns {
            rows.push(vec!["cache patterns on".into(), p.clone()]);
        }
        if let Some(m) = &s.redis_maxmemory {
            rows.push(vec!["Redis maxmemory".into(), m.clone()]);
        }
        table(out, &["setting", "value"], 2, &rows);
    }

    fn render_endpoints(&self, out: &mut String) {
        if self.endpoints.is_empty() {
            return;
        }
        out.push_str("### Database vs cache, per endpoint\n\n");
        let mut rows = Vec::new();
        for c in &self.endpoints {
            let name = format!("`{}`", c.endpoint.route());
            let mut first = Some(name);
            for r in [&c.database, &c.cache].into_iter().flatten() {
                rows.push(run_row(first.take().unwrap_or_default(), r));
            }
        }
        table(
            out,
            &[
                "endpoint",
                "path",
                "requests/s",
                "p50 (ms)",
                "p95 (ms)",
                "p99 (ms)",
                "max (ms)",
                "errors",
                "DB queries/s",
                "hit ratio",
            ],
            2,
            &rows,
        );
        let rows: Vec<Vec<String>> = self
            .endpoints
            .iter()
            .filter(|c| c.database.is_some() && c.cache.is_some())
            .map(|c| {
                let s = c.speedup;
                vec![
                    format!("`{}`", c.endpoint.route()),
                    opt(s.throughput, fmt_x),
                    opt(s.p50, fmt_x),
                    opt(s.p95, fmt_x),
                    opt(s.p99, fmt_x),
                    opt(s.db_load_reduction_pct, fmt_pct),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str("What the cache changed (cache vs database; above 1× is better with the cache):\n\n");
            table(out, &["endpoint", "throughput", "p50", "p95", "p99", "database load reduction"], 1, &rows);
        }
    }

    fn render_miss_path(&self, out: &mut String) {
        let Some(m) = &self.miss_path else { return };
        let _ = writeln!(
            out,
            "### Miss path: each product id once, one connection\n\n\
             After a flush, each product id from PostgreSQL (`cache=off`) and through the cache (a miss), one request \
             at a time and the two in turns (A B, B A, ...), so both meet the same machine and the same warm \
             PostgreSQL buffers; then each id again (a hit). Server-side times from `Server-Timing` (`total`, \
             `redis`, `db`), client time from the bench.\n"
        );
        let p50 = |l: Option<Latency>| opt(l.map(|l| l.p50_ms), fmt_ms);
        let p95 = |l: Option<Latency>| opt(l.map(|l| l.p95_ms), fmt_ms);
        let rows: Vec<Vec<String>> = [
            ("database (`cache=off`)", &m.database),
            ("miss (Redis lookup, database, fill)", &m.miss),
            ("hit (Redis only)", &m.hit),
        ]
        .into_iter()
        .map(|(name, r)| {
            vec![
                name.to_owned(),
                fmt_int(r.requests as f64),
                p50(r.server),
                p95(r.server),
                p50(r.server_redis),
                p50(r.server_db),
                p50(r.latency),
            ]
        })
        .collect();
        table(
            out,
            &[
                "pass",
                "requests",
                "server p50 (ms)",
                "server p95 (ms)",
                "Redis p50 (ms)",
                "database p50 (ms)",
                "client p50 (ms)",
            ],
            1,
            &rows,
        );
        if let (Some(extra), Some(rt)) = (m.extra_ms, m.round_trip_ms) {
            let _ = writeln!(
                out,
                "A miss takes {} ms more than `cache=off` at the median: one Redis round trip (the lookup, {} ms) \
                 and {} ms besides: the app's own work (the key, the generation token, queueing the fill without \
                 waiting for its reply) and any difference between the two database steps (in the table).\n",
                fmt_ms(extra),
                fmt_ms(rt),
                fmt_ms((extra - rt).max(0.0))
            );
        }
    }

    fn render_write_mix(&self, out: &mut String) {
        if self.write_mix.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "### Writes and the hit ratio\n\n\
             `GET /api/products/{{id}}` through the cache, with a share of `PUT /api/products/{{id}}` `{{\"stock\": n}}` \
             (same key distribution); each write invalidates the product and every list and aggregate.\n"
        );
        let rows: Vec<Vec<String>> = self
            .write_mix
            .iter()
            .map(|r| {
                vec![
                    fmt_share(r.write_ratio),
                    fmt_int(r.requests_per_s),
                    opt(r.latency.map(|l| l.p50_ms), fmt_ms),
                    opt(r.latency.map(|l| l.p99_ms), fmt_ms),
                    opt(r.writes.map(|l| l.p50_ms), fmt_ms),
                    opt(r.hit_ratio.map(|h| h * 100.0), fmt_pct),
                    opt(r.db_queries_per_s, fmt_int),
                    fmt_int(r.errors as f64),
                ]
            })
            .collect();
        table(
            out,
            &[
                "writes",
                "requests/s",
                "read p50 (ms)",
                "read p99 (ms)",
                "write p50 (ms)",
                "hit ratio",
                "DB queries/s",
                "errors",
            ],
            1,
            &rows,
        );
    }

    fn render_apps(&self, out: &mut String) {
        if self.apps.is_empty() {
            return;
        }
        out.push_str("### Hit path against the HTTP ceiling, and memory\n\n");
        let rows: Vec<Vec<String>> = self
            .apps
            .iter()
            .map(|a| {
                let hit = a.product_hit.as_ref();
                vec![
                    a.name.clone(),
                    opt(a.ceiling.as_ref().map(|c| c.requests_per_s), fmt_int),
                    opt(hit.map(|h| h.requests_per_s), fmt_int),
                    opt(a.of_ceiling().map(|f| f * 100.0), fmt_pct),
                    opt(
                        hit.and_then(|h| ratio(h.x_cache.l1 as f64, (h.x_cache.l1 + h.x_cache.l2) as f64))
                            .map(|f| f * 100.0),
                        fmt_pct,
                    ),
                    opt(hit.and_then(RunStats::p50), fmt_ms),
                    opt(hit.and_then(|h| h.latency).map(|l| l.p99_ms), fmt_ms),
                    opt(hit.and_then(RunStats::server_p50), fmt_ms),
                    opt(a.ceiling.as_ref().and_then(|c| c.app_cpu_us_per_request), fmt_int),
                    opt(hit.and_then(|h| h.app_cpu_us_per_request), fmt_int),
                    opt(a.rss_bytes, fmt_mb),
                ]
            })
            .collect();
        table(
            out,
            &[
                "app",
                "`/healthz` requests/s",
                "product hits requests/s",
                "of ceiling",
                "hits from L1",
                "hit p50 (ms)",
                "hit p99 (ms)",
                "server p50 (ms)",
                "app CPU µs/request, `/healthz`",
                "app CPU µs/request, hits",
                "resident memory",
            ],
            1,
            &rows,
        );
    }

    fn render_by_connections(&self, out: &mut String) {
        let Some(app) = self.apps.iter().find(|a| !a.by_connections.is_empty()) else { return };
        let _ = writeln!(
            out,
            "### Cache hits by connections, {}\n\n\
             `GET /api/products/{{id}}` hits at several loads. Server-side `redis` is the time from sending the \
             lookup to reading its reply: as connections grow, it is mostly waiting for Redis and the app, which share \
             the cores with the load generator.\n",
            app.name
        );
        let rows: Vec<Vec<String>> = app
            .hit_runs()
            .into_iter()
            .map(|r| {
                vec![
                    r.concurrency.to_string(),
                    fmt_int(r.requests_per_s),
                    opt(r.p50(), fmt_ms),
                    opt(r.latency.map(|l| l.p99_ms), fmt_ms),
                    opt(r.server_p50(), fmt_ms),
                    opt(r.server_redis.map(|l| l.p50_ms), fmt_ms),
                    opt(r.app_cpu_us_per_request, fmt_int),
                ]
            })
            .collect();
        table(
            out,
            &[
                "connections",
                "requests/s",
                "p50 (ms)",
                "p99 (ms)",
                "server p50 (ms)",
                "server `redis` p50 (ms)",
                "app CPU µs/request",
            ],
            1,
            &rows,
        );
    }

    fn render_bar(&self, out: &mut String) {
        if self.bar.is_empty() {
            return;
        }
        out.push_str("### The bar\n\n");
        let rows: Vec<Vec<String>> =
            self.bar.iter().map(|g| vec![g.goal.clone(), g.measured.clone(), g.status.word().to_owned()]).collect();
        table(out, &["goal", "measured", ""], 3, &rows);
    }

    fn render_notes(&self, out: &mut String) {
        if self.notes.is_empty() {
            return;
        }
        out.push_str("### Notes\n\n");
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
}

impl Report {
    fn comparison(&self, e: Endpoint) -> Option<&Comparison> {
        self.endpoints.iter().find(|c| c.endpoint == e && c.database.is_some() && c.cache.is_some())
    }

    /// How to read the tables, with this run's numbers where they make the point.
    fn render_reading(&self, out: &mut String) {
        if self.endpoints.is_empty() && self.apps.is_empty() {
            return;
        }
        out.push_str("### How to read this\n\n");
        out.push_str(
            "- Requests/s and p50 … max are measured by the client, so they include the load generator, which runs \
             on the same cores as the app, PostgreSQL and Redis. `/healthz`, a static response, is the most this \
             machine serves with the load generator on it: no endpoint can beat it.\n",
        );
        let x = |e: Endpoint| self.comparison(e).and_then(|c| c.speedup.p50);
        if let (Some(product), Some(categories)) = (x(Endpoint::Product), x(Endpoint::Categories)) {
            let mut others = String::new();
            for (e, what) in [(Endpoint::Search, "the search"), (Endpoint::Top, "the top products")] {
                if let Some(v) = x(e) {
                    let _ = write!(others, ", {} for {what}", fmt_x(v));
                }
            }
            let _ = writeln!(
                out,
                "- One product by id is a primary-key lookup, cheap for PostgreSQL: the cache made its p50 {} faster, \
                 against {} for the `/api/categories` aggregate{others}. A cache pays off most where the database \
                 works hardest.",
                fmt_x(product),
                fmt_x(categories)
            );
        }
        if let Some(m) = &self.miss_path
            && let (Some(db), Some(redis)) = (m.database.server_db, m.hit.server_redis)
        {
            let _ = writeln!(
                out,
                "- Without load (one connection), fetching one product took {} ms in PostgreSQL and {} ms in Redis \
                 at the median (server-side).",
                fmt_ms(db.p50_ms),
                fmt_ms(redis.p50_ms)
            );
        }
        if !self.bar.is_empty() {
            out.push_str(
                "- The miss goal counts round trips: the extra server-side time of a miss over `cache=off`, divided by \
                 the lookup's round trip, met below 1.5. A miss also does some work in the app, so its extra time \
                 is never exactly one round trip; a design that waits for its fill, or looks up twice, measures 2 \
                 or more.\n\
                 - The server-side goal under load is judged at the lightest load that reaches 20,000 requests/s. \
                 The load generator keeps every connection busy, so beyond what the machine can serve, requests \
                 queue, and inside the app that queue shows as server-side time (mostly waiting for Redis's \
                 reply): see the table of hits by connections.\n",
            );
        }
        out.push_str(
            "- Hit ratio: the app's own counters (`/api/stats` hits, misses, errors), as deltas over the measured \
             run, after the warm-up. DB queries/s: `db_query_duration_seconds_count` in `/metrics`, summed over all \
             queries, as deltas over the run.\n",
        );
        if self
            .apps
            .iter()
            .flat_map(|a| [&a.ceiling, &a.product_hit])
            .flatten()
            .any(|r| r.app_cpu_us_per_request.is_some())
        {
            out.push_str(
                "- App CPU µs/request: CPU time of the app process (from `/proc`) over the run, per request answered: \
                 what a request costs the server, whatever the load generator costs. PostgreSQL's and Redis's own \
                 CPU is not in it.\n",
            );
        }
        let mixed: Vec<String> = self
            .write_mix
            .iter()
            .filter(|r| r.write_ratio > 0.0)
            .filter_map(|r| Some(format!("{} at {} writes", fmt_pct(r.hit_ratio? * 100.0), fmt_share(r.write_ratio))))
            .collect();
        if !mixed.is_empty() {
            let _ = writeln!(
                out,
                "- Each write invalidates what it made stale, and the next read of it goes to PostgreSQL: the hit \
                 ratio was {}.",
                mixed.join(", ")
            );
        }
        out.push_str(
            "- To watch the hit ratio fall as the key space outgrows Redis memory, set `maxmemory` below what the \
             500 products need (`redis-cli -p PORT CONFIG SET maxmemory 1500kb` on the local stack, where an idle \
             Redis uses about 1 MB) and run `cache-demo-bench --endpoint product --cache on --distribution uniform`: \
             evictions are listed under Notes.\n\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// docs/benchmarks.md

pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";

const FILE_HEAD: &str = "# Benchmarks

What the cache does to response time, throughput and database load, measured by `make bench` on the machine
named below: the app, PostgreSQL, Redis and the load generator all on the same cores. Run it on your own
machine, or against a cluster (see the README), rather than trusting numbers from someone else's.
";

const FILE_HISTORY: &str = "## History

Kept by hand: `make bench` rewrites only what lies between the bench markers above. Note before/after
figures of changes that matter here (date, commit, machine, the numbers and what changed).
";

/// The file with `generated` between the markers: the rest of an existing file (head, history) is kept; a file
/// without markers is kept whole and the block appended; a missing file gets a head and a History section.
pub fn splice(existing: Option<&str>, generated: &str) -> String {
    let block = format!("{BEGIN}\n{}\n{END}", generated.trim_end());
    match existing {
        Some(text) => match (text.find(BEGIN), text.find(END)) {
            (Some(b), Some(e)) if b < e => format!("{}{block}{}", &text[..b], &text[e + END.len()..]),
            // A file written by hand: keep all of it and add the block at the end.
            _ => format!("{}\n\n{block}\n", text.trim_end()),
        },
        None => format!("{FILE_HEAD}\n{block}\n\n{FILE_HISTORY}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Dates without a date library

/// `YYYY-MM-DD HH:MM UTC` of `secs` since the Unix epoch.
pub fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests;
