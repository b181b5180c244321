//! The results of a bench run: one run summarized, the comparisons and passes built from runs, and the whole
//! report (JSON is this structure, serialized).

use serde::Serialize;

use super::bar::Goal;
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
    /// CPU time of the load generator (this process) and of Redis (when it runs on this machine) per request
    /// answered, in microseconds, and the server's context switches per 1,000 requests answered: read only in
    /// the calibrated runs.
    pub load_cpu_us_per_request: Option<f64>,
    pub redis_cpu_us_per_request: Option<f64>,
    pub switches_per_1k: Option<SwitchRates>,
    /// Requests/s of each slice, in the order they ran: only in the runs measured in turns, which are cut in
    /// slices (the calibrated runs, and the L1 run with its `/healthz`).
    pub slice_requests_per_s: Vec<f64>,
    pub first_error: Option<String>,
}

/// A server's context switches per 1,000 requests answered: `waited` (it had nothing to do) and `preempted`
/// (the scheduler gave its core to another thread). See [`ContextSwitches`](crate::app::ContextSwitches).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SwitchRates {
    pub waited: f64,
    pub preempted: f64,
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
        let answered = r.answered() as f64;
        let per_request_us = |seconds: Option<f64>| seconds.filter(|_| answered > 0.0).map(|c| c * 1e6 / answered);
        let switches_per_1k = d.switches.filter(|_| answered > 0.0).map(|s| SwitchRates {
            waited: s.voluntary as f64 * 1000.0 / answered,
            preempted: s.involuntary as f64 * 1000.0 / answered,
        });
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
            app_cpu_us_per_request: per_request_us(d.cpu_seconds),
            load_cpu_us_per_request: per_request_us(d.load_cpu_seconds),
            redis_cpu_us_per_request: per_request_us(d.redis_cpu_seconds),
            switches_per_1k,
            slice_requests_per_s: Vec::new(),
            first_error: r.first_error.clone(),
        }
    }

    /// The lowest and highest of the slice-by-slice shares of this run in `reference`'s requests/s (slice `i` of
    /// one against slice `i` of the other, which ran next to it): how far the machine's changes of speed moved
    /// a share within the run. `None` without slices.
    pub fn slice_share_range(&self, reference: &RunStats) -> Option<(f64, f64)> {
        self.slice_requests_per_s.iter().zip(&reference.slice_requests_per_s).filter_map(|(a, r)| ratio(*a, *r)).fold(
            None,
            |range, share| match range {
                None => Some((share, share)),
                Some((low, high)) => Some((f64::min(low, share), f64::max(high, share))),
            },
        )
    }

    /// The standard error of this run's share of `reference`'s requests/s, as a fraction like the share, from
    /// the pairs of slices that ran side by side: the share of the whole run is a ratio of sums, R = Σaᵢ / Σbᵢ,
    /// and its error (the delta method) is √(Σ(aᵢ − R·bᵢ)² / (n(n − 1))) / mean(b). It counts only the scatter of
    /// the slices within the run: what moves a whole run or round (the machine's state over tens of seconds) is
    /// not in it. `None` below two pairs.
    pub fn slice_share_error(&self, reference: &RunStats) -> Option<f64> {
        let pairs: Vec<(f64, f64)> = self
            .slice_requests_per_s
            .iter()
            .zip(&reference.slice_requests_per_s)
            .filter(|(_, b)| **b > 0.0)
            .map(|(a, b)| (*a, *b))
            .collect();
        let n = pairs.len() as f64;
        if pairs.len() < 2 {
            return None;
        }
        let (sum_a, sum_b) = pairs.iter().fold((0.0, 0.0), |(sa, sb), (a, b)| (sa + a, sb + b));
        let r = sum_a / sum_b;
        let squares: f64 = pairs.iter().map(|(a, b)| (a - r * b).powi(2)).sum();
        ratio((squares / (n * (n - 1.0))).sqrt(), sum_b / n)
    }

    pub(super) fn p50(&self) -> Option<f64> {
        self.latency.map(|l| l.p50_ms)
    }

    pub(super) fn server_p50(&self) -> Option<f64> {
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

/// The app against the references of `cache-demo-ref`, measured in turns in the same run (L1 off).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Slices each of the five runs was cut into, in all.
    pub slices: u32,
    /// Rounds those slices came in, the cache primed before each.
    pub rounds: u32,
    /// The app's `/healthz`.
    pub healthz: RunStats,
    /// The same request to the static reference.
    pub static_ref: RunStats,
    /// The app's product cache hits, Redis only.
    pub hits: RunStats,
    /// The same requests to the Redis reference: one `GET` of the app's entry.
    pub redis_ref: RunStats,
    /// The same requests to the lookup reference: the app's own lookup, nothing else.
    pub lookup_ref: RunStats,
}

impl Calibration {
    /// The app's `/healthz` throughput as a fraction of the static reference's.
    pub fn healthz_share(&self) -> Option<f64> {
        ratio(self.healthz.requests_per_s, self.static_ref.requests_per_s)
    }

    /// The app's hit throughput as a fraction of the Redis reference's.
    pub fn hit_share(&self) -> Option<f64> {
        ratio(self.hits.requests_per_s, self.redis_ref.requests_per_s)
    }

    /// The app's hit throughput as a fraction of the lookup reference's.
    pub fn lookup_share(&self) -> Option<f64> {
        ratio(self.hits.requests_per_s, self.lookup_ref.requests_per_s)
    }

    /// The lookup reference's throughput as a fraction of the Redis reference's: what the generation check
    /// costs a server that does nothing else.
    pub fn lookup_ref_share(&self) -> Option<f64> {
        ratio(self.lookup_ref.requests_per_s, self.redis_ref.requests_per_s)
    }

    /// App CPU per `/healthz` over the static reference's CPU per request.
    pub fn healthz_cpu_ratio(&self) -> Option<f64> {
        ratio(self.healthz.app_cpu_us_per_request?, self.static_ref.app_cpu_us_per_request?)
    }

    /// App CPU per hit over the Redis reference's CPU per request.
    pub fn hit_cpu_ratio(&self) -> Option<f64> {
        ratio(self.hits.app_cpu_us_per_request?, self.redis_ref.app_cpu_us_per_request?)
    }

    /// App CPU per hit over the lookup reference's CPU per request.
    pub fn lookup_cpu_ratio(&self) -> Option<f64> {
        ratio(self.hits.app_cpu_us_per_request?, self.lookup_ref.app_cpu_us_per_request?)
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
    /// The app against the reference servers (the standard scenario, with `--reference`).
    pub calibration: Option<Calibration>,
    pub bar: Vec<Goal>,
    pub notes: Vec<String>,
}
