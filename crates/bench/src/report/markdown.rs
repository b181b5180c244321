//! The report as Markdown: number formats, tables, one section per part of the run, and "How to read this".
//! Long prose lives in `prose/*.md` beside this file.

use std::fmt::Write as _;

use super::bar::BAR;
use super::types::{Calibration, Comparison, Report, RunStats};
use crate::app::L1State;
use crate::summary::{Latency, ratio};
use crate::workload::{CacheMode, Endpoint};

const MISS_PATH: &str = include_str!("prose/miss-path.md");
const WRITE_MIX: &str = include_str!("prose/write-mix.md");
const BY_CONNECTIONS: &str = include_str!("prose/by-connections.md");
const READING_LOAD: &str = include_str!("prose/reading-load.md");
const READING_BAR: &str = include_str!("prose/reading-bar.md");
const READING_COUNTERS: &str = include_str!("prose/reading-counters.md");
const READING_CPU: &str = include_str!("prose/reading-cpu.md");
const READING_MAXMEMORY: &str = include_str!("prose/reading-maxmemory.md");
const CALIBRATION: &str = include_str!("prose/calibration.md");
const CALIBRATION_SCHEDULER: &str = include_str!("prose/calibration-scheduler.md");

/// `template` with each `(placeholder, value)` put in.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (k, v)| text.replace(k, v))
}

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

/// The lowest and highest of a share's slice-by-slice values, in percent.
pub fn fmt_share_range((low, high): (f64, f64)) -> String {
    format!("{}–{}", fmt_pct(low * 100.0), fmt_pct(high * 100.0))
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

/// CPU microseconds per request, to a tenth: `7.4`.
pub(super) fn fmt_us(v: f64) -> String {
    format!("{v:.1}")
}

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
        self.render_calibration(&mut out);
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
        out.push_str(MISS_PATH);
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
        out.push_str(WRITE_MIX);
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
        if self.apps.iter().any(|a| a.l1 == L1State::On) {
            out.push_str(
                "With the L1, `/healthz` and the hits take turns in slices, in rounds that each start from freshly read \
                 entries (as the runs against the references below do), and the load generator does not read \
                 the hits' `Server-Timing` (so as not to charge its reading to them): no server time is shown.\n\n",
            );
        }
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
                    opt(a.ceiling.as_ref().and_then(|c| c.app_cpu_us_per_request), fmt_us),
                    opt(hit.and_then(|h| h.app_cpu_us_per_request), fmt_us),
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

    fn render_calibration(&self, out: &mut String) {
        let Some(c) = &self.calibration else { return };
        out.push_str(
            &CALIBRATION.replace("{slices}", &c.slices.to_string()).replace("{rounds}", &c.rounds.to_string()),
        );
        let cpu = |r: &RunStats| opt(r.app_cpu_us_per_request, fmt_us);
        let p50 = |r: &RunStats| opt(r.p50(), fmt_ms);
        let p99 = |r: &RunStats| opt(r.latency.map(|l| l.p99_ms), fmt_ms);
        let us = |v: Option<f64>| opt(v, fmt_us);
        let row = |what: &str,
                   app: &RunStats,
                   reference: &RunStats,
                   share: Option<f64>,
                   cpu_x: Option<f64>,
                   redis: [Option<f64>; 2]| {
            vec![
                what.to_owned(),
                fmt_int(app.requests_per_s),
                fmt_int(reference.requests_per_s),
                opt(share.map(|f| f * 100.0), fmt_pct),
                app.slice_share_range(reference).map_or("–".to_owned(), fmt_share_range),
                format!("{} / {}", p50(app), p50(reference)),
                format!("{} / {}", p99(app), p99(reference)),
                cpu(app),
                cpu(reference),
                opt(cpu_x, fmt_x),
                format!("{} / {}", us(redis[0]), us(redis[1])),
                fmt_int((app.errors + reference.errors) as f64),
            ]
        };
        let rows = vec![
            row(
                "`GET /healthz`, static reference",
                &c.healthz,
                &c.static_ref,
                c.healthz_share(),
                c.healthz_cpu_ratio(),
                [None, None],
            ),
            row(
                "`GET /api/products/{id}` hits (L1 off), Redis reference",
                &c.hits,
                &c.redis_ref,
                c.hit_share(),
                c.hit_cpu_ratio(),
                [c.hits.redis_cpu_us_per_request, c.redis_ref.redis_cpu_us_per_request],
            ),
            row(
                "`GET /api/products/{id}` hits (L1 off), lookup reference",
                &c.hits,
                &c.lookup_ref,
                c.lookup_share(),
                c.lookup_cpu_ratio(),
                [c.hits.redis_cpu_us_per_request, c.lookup_ref.redis_cpu_us_per_request],
            ),
        ];
        table(
            out,
            &[
                "request, against",
                "app requests/s",
                "reference requests/s",
                "app share",
                "app share, slice by slice (lowest–highest)",
                "p50 (ms) app / reference",
                "p99 (ms) app / reference",
                "app CPU µs/request",
                "reference CPU µs/request",
                "app CPU vs reference",
                "Redis CPU µs/request app / reference",
                "errors",
            ],
            1,
            &rows,
        );
        render_scheduler(c, out);
    }

    fn render_by_connections(&self, out: &mut String) {
        let Some(app) = self.apps.iter().find(|a| !a.by_connections.is_empty()) else { return };
        out.push_str(&BY_CONNECTIONS.replace("{app}", &app.name));
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
        out.push_str(READING_LOAD);
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
            out.push_str(&fill(READING_BAR, &BAR.placeholders()));
        }
        out.push_str(READING_COUNTERS);
        if self
            .apps
            .iter()
            .flat_map(|a| [&a.ceiling, &a.product_hit])
            .flatten()
            .any(|r| r.app_cpu_us_per_request.is_some())
        {
            out.push_str(READING_CPU);
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
        out.push_str(READING_MAXMEMORY);
    }
}

/// The calibrated runs seen from the scheduler: the load generator's CPU per request and each server's context
/// switches, when the bench read them.
fn render_scheduler(c: &Calibration, out: &mut String) {
    let runs = [
        ("app, `GET /healthz`", &c.healthz),
        ("static reference, `GET /healthz`", &c.static_ref),
        ("app, `GET /api/products/{id}` hits (L1 off)", &c.hits),
        ("Redis reference, the same hits", &c.redis_ref),
        ("lookup reference, the same hits", &c.lookup_ref),
    ];
    if runs.iter().all(|(_, r)| r.load_cpu_us_per_request.is_none() && r.switches_per_1k.is_none()) {
        return;
    }
    out.push_str(CALIBRATION_SCHEDULER);
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|(what, r)| {
            let all = [r.app_cpu_us_per_request, r.load_cpu_us_per_request, r.redis_cpu_us_per_request]
                .into_iter()
                .try_fold(0.0, |sum, v| v.map(|v| sum + v));
            vec![
                (*what).to_owned(),
                fmt_int(r.requests_per_s),
                opt(r.app_cpu_us_per_request, fmt_us),
                opt(r.load_cpu_us_per_request, fmt_us),
                opt(r.redis_cpu_us_per_request, fmt_us),
                opt(all, fmt_us),
                opt(r.switches_per_1k.map(|s| s.waited), fmt_int),
                opt(r.switches_per_1k.map(|s| s.preempted), fmt_int),
            ]
        })
        .collect();
    table(
        out,
        &[
            "server, request",
            "requests/s",
            "server CPU µs/request",
            "load generator CPU µs/request",
            "Redis CPU µs/request",
            "all three, CPU µs/request",
            "server waited, per 1,000 requests",
            "server preempted, per 1,000 requests",
        ],
        1,
        &rows,
    );
}
