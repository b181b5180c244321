//! The load generator: N workers, N connections, one shared deadline and one shared request budget.
//!
//! Each worker records into histograms of its own, merged when all have stopped, so the only thing shared per
//! request is one relaxed atomic increment (the budget, which also numbers the requests).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::Method;
use http::header::HeaderName;
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::client::{ClientError, Conn, Reply, Target};
use crate::summary::new_histogram;
use crate::workload::{Op, Workload};

/// One measured run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub workload: Workload,
    /// Workers, each with one connection.
    pub concurrency: usize,
    /// Stop issuing requests after this long (requests in flight complete and count).
    pub duration: Duration,
    /// Stop after this many requests in all.
    pub max_requests: Option<u64>,
    /// Upper bound of one request.
    pub timeout: Duration,
    /// Whether to read `Server-Timing`: not where a server that sends it is compared with one that does not (the
    /// calibrated runs), since the load generator's reading would be charged to the first.
    pub server_timing: bool,
}

/// What one run recorded, all workers merged. Times in microseconds.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub elapsed: Duration,
    /// Client-side time of each read (request written to last body byte read).
    pub reads: Histogram<u64>,
    pub writes: Histogram<u64>,
    /// `Server-Timing` of the reads: `total`, `redis` and `db`.
    pub server_total: Histogram<u64>,
    pub server_redis: Histogram<u64>,
    pub server_db: Histogram<u64>,
    /// Responses with a status other than 2xx.
    pub http_errors: u64,
    /// Requests without a response: connection failures, timeouts.
    pub transport_errors: u64,
    pub x_cache: XCacheCounts,
    /// The first error seen, for the log.
    pub first_error: Option<String>,
}

impl LoadResult {
    fn empty() -> LoadResult {
        LoadResult {
            elapsed: Duration::ZERO,
            reads: new_histogram(),
            writes: new_histogram(),
            server_total: new_histogram(),
            server_redis: new_histogram(),
            server_db: new_histogram(),
            http_errors: 0,
            transport_errors: 0,
            x_cache: XCacheCounts::default(),
            first_error: None,
        }
    }

    /// Requests that got an answer (of any status).
    pub fn answered(&self) -> u64 {
        self.reads.len() + self.writes.len()
    }

    pub fn errors(&self) -> u64 {
        self.http_errors + self.transport_errors
    }

    /// Adds a later run of the same workload: its requests, errors and time.
    pub fn append(&mut self, other: LoadResult) {
        self.elapsed += other.elapsed;
        self.merge(other);
    }

    fn merge(&mut self, other: LoadResult) {
        // Same bounds everywhere: adding cannot fail.
        let _ = self.reads.add(&other.reads);
        let _ = self.writes.add(&other.writes);
        let _ = self.server_total.add(&other.server_total);
        let _ = self.server_redis.add(&other.server_redis);
        let _ = self.server_db.add(&other.server_db);
        self.http_errors += other.http_errors;
        self.transport_errors += other.transport_errors;
        self.x_cache.add(other.x_cache);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn record(&mut self, is_write: bool, path: &str, reply: &Reply, took: Duration, server_timing: bool) {
        let us = took.as_micros() as u64;
        if !reply.is_success() {
            self.http_errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(format!("HTTP {} on {path}", reply.status));
            }
        }
        if is_write {
            self.writes.saturating_record(us);
            return;
        }
        self.reads.saturating_record(us);
        self.x_cache.count(reply.header(&X_CACHE), reply.header(&X_CACHE_LEVEL));
        if let Some(timing) = reply.header(&SERVER_TIMING).filter(|_| server_timing).map(ServerTiming::parse) {
            for (value, h) in [
                (timing.total_us, &mut self.server_total),
                (timing.redis_us, &mut self.server_redis),
                (timing.db_us, &mut self.server_db),
            ] {
                if let Some(v) = value {
                    h.saturating_record(v.max(1));
                }
            }
        }
    }

    fn transport_error(&mut self, e: &ClientError) {
        self.transport_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

// Named once: a lookup by `&str` parses and checks the name on every response.
static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static X_CACHE_LEVEL: HeaderName = HeaderName::from_static("x-cache-level");
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// `X-Cache` values seen on reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct XCacheCounts {
    pub hit: u64,
    pub miss: u64,
    pub bypass: u64,
    /// No or another value (`/healthz`, errors).
    pub none: u64,
    /// Hits by `X-Cache-Level`: the in-process L1 or Redis (L2).
    pub l1: u64,
    pub l2: u64,
}

impl XCacheCounts {
    fn count(&mut self, value: Option<&str>, level: Option<&str>) {
        match level {
            Some("L1") => self.l1 += 1,
            Some("L2") => self.l2 += 1,
            _ => {}
        }
        match value {
            Some("HIT") => self.hit += 1,
            Some("MISS") => self.miss += 1,
            Some("BYPASS") => self.bypass += 1,
            _ => self.none += 1,
        }
    }

    fn add(&mut self, o: XCacheCounts) {
        self.hit += o.hit;
        self.miss += o.miss;
        self.bypass += o.bypass;
        self.none += o.none;
        self.l1 += o.l1;
        self.l2 += o.l2;
    }
}

/// The app's `Server-Timing: total;dur=0.123, redis;dur=0.080, db;dur=1.200`, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerTiming {
    pub total_us: Option<u64>,
    pub redis_us: Option<u64>,
    pub db_us: Option<u64>,
}

impl ServerTiming {
    pub fn parse(header: &str) -> ServerTiming {
        let mut t = ServerTiming::default();
        for metric in header.split(',') {
            let (name, params) = metric.split_once(';').unwrap_or((metric, ""));
            let slot = match name.trim() {
                "total" => &mut t.total_us,
                "redis" => &mut t.redis_us,
                "db" => &mut t.db_us,
                _ => continue,
            };
            *slot = params.split(';').filter_map(|p| p.trim().strip_prefix("dur=")).find_map(micros_of_ms);
        }
        t
    }
}

/// A `dur` in milliseconds (`0.157`), in whole microseconds, rounded; `None` if it is not a number ≥ 0.
///
/// The load generator reads one per response, and its CPU is taken from the server it measures: the app's
/// form (digits, then at most three decimals) is read with integer arithmetic, exactly; anything else is
/// parsed as a float.
fn micros_of_ms(value: &str) -> Option<u64> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !whole.is_empty() && whole.len() <= 12 && fraction.len() <= 3 && digits(whole) && digits(fraction) {
        let whole: u64 = whole.parse().ok()?;
        let fraction =
            fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |n, b| n * 10 + u64::from(b - b'0'));
        return Some(whole * 1000 + fraction);
    }
    value.parse::<f64>().ok().filter(|ms| ms.is_finite() && *ms >= 0.0).map(|ms| (ms * 1000.0).round() as u64)
}

struct Shared {
    workload: Workload,
    issued: AtomicU64,
    budget: u64,
    deadline: Instant,
    timeout: Duration,
    server_timing: bool,
}

/// Runs `spec` against `target`. Connections are opened before the clock starts; if one cannot be opened,
/// nothing runs. `progress` shows elapsed time (or requests, when only a count bounds the run).
pub async fn run(target: &Target, spec: &LoadSpec, progress: &ProgressBar) -> Result<LoadResult, ClientError> {
    let concurrency = spec.concurrency.max(1);
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Conn::connect(target, spec.timeout).await?);
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        workload: spec.workload.clone(),
        issued: AtomicU64::new(0),
        budget: spec.max_requests.unwrap_or(u64::MAX),
        deadline: started + spec.duration,
        timeout: spec.timeout,
        server_timing: spec.server_timing,
    });
    let seed: u64 = rand::random();
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(worker(target.clone(), conn, shared.clone(), seed ^ (i as u64 + 1))))
        .collect();
    let ticker = tokio::spawn(tick(progress.clone(), shared.clone(), spec.max_requests, started));

    let mut result = LoadResult::empty();
    for w in workers {
        match w.await {
            Ok(r) => result.merge(r),
            // A worker cannot panic short of a bug; count its loss rather than hide it.
            Err(e) => {
                result.transport_errors += 1;
                result.first_error.get_or_insert_with(|| format!("worker failed: {e}"));
            }
        }
    }
    result.elapsed = started.elapsed();
    ticker.abort();
    progress.finish_and_clear();
    Ok(result)
}

async fn worker(target: Target, conn: Conn, shared: Arc<Shared>, seed: u64) -> LoadResult {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut result = LoadResult::empty();
    let mut conn = Some(conn);
    loop {
        if Instant::now() >= shared.deadline {
            break;
        }
        let seq = shared.issued.fetch_add(1, Ordering::Relaxed);
        if seq >= shared.budget {
            break;
        }
        let (method, path, body, is_write) = match shared.workload.next(&mut rng, seq) {
            Op::Read(path) => (Method::GET, target.path(&path), None, false),
            Op::Write { path, body } => (Method::PUT, target.path(&path), Some(Bytes::from(body)), true),
        };
        let mut c = match conn.take().filter(Conn::is_open) {
            Some(c) => c,
            None => match Conn::connect(&target, shared.timeout).await {
                Ok(c) => c,
                Err(e) => {
                    result.transport_error(&e);
                    // The server is gone or refusing: do not spin; stop at the deadline like everyone else.
                    let pause =
                        shared.deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match c.send(method, &path, body, shared.timeout).await {
            Ok(reply) => {
                result.record(is_write, &path, &reply, sent.elapsed(), shared.server_timing);
                conn = Some(c);
            }
            Err(e) => result.transport_error(&e),
        }
    }
    result
}

/// Two requests per pair, on one connection, one at a time: the first of each pair into the first result, the
/// second into the second, in alternating order (A B, B A, ...), so that whatever drifts during the run (the
/// machine, PostgreSQL's buffers, which of the two ran just before) weighs on both alike. Each result's
/// `elapsed` is the sum of its own requests' times.
pub async fn paired(
    target: &Target,
    pairs: &[(String, String)],
    timeout: Duration,
) -> Result<(LoadResult, LoadResult), ClientError> {
    let mut conn = Conn::connect(target, timeout).await?;
    let mut results = [LoadResult::empty(), LoadResult::empty()];
    for (i, (a, b)) in pairs.iter().enumerate() {
        let order = if i % 2 == 0 { [(0, a), (1, b)] } else { [(1, b), (0, a)] };
        for (which, path) in order {
            let path = target.path(path);
            if !conn.is_open() {
                conn = Conn::connect(target, timeout).await?;
            }
            let sent = Instant::now();
            let result = &mut results[which];
            match conn.send(Method::GET, &path, None, timeout).await {
                Ok(reply) => {
                    let took = sent.elapsed();
                    result.elapsed += took;
                    result.record(false, &path, &reply, took, true);
                }
                Err(e) => result.transport_error(&e),
            }
        }
    }
    let [first, second] = results;
    Ok((first, second))
}

async fn tick(bar: ProgressBar, shared: Arc<Shared>, max_requests: Option<u64>, started: Instant) {
    let mut every = tokio::time::interval(Duration::from_millis(200));
    loop {
        every.tick().await;
        let issued = shared.issued.load(Ordering::Relaxed).min(shared.budget);
        let secs = started.elapsed().as_secs_f64();
        match max_requests {
            Some(_) => bar.set_position(issued),
            None => bar.set_position(started.elapsed().as_millis() as u64),
        }
        if secs > 0.0 {
            bar.set_message(format!("{issued} requests, {:.0}/s", issued as f64 / secs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_read_in_microseconds() {
        let t = ServerTiming::parse("total;dur=0.123, redis;dur=0.080, db;dur=12.5");
        assert_eq!(t, ServerTiming { total_us: Some(123), redis_us: Some(80), db_us: Some(12_500) });
        let t = ServerTiming::parse("total;dur=1.000");
        assert_eq!(t, ServerTiming { total_us: Some(1000), redis_us: None, db_us: None });
        let t = ServerTiming::parse("cpu;desc=\"x\";dur=3, total;dur=abc");
        assert_eq!(t, ServerTiming::default());
        let t = ServerTiming::parse(" db ; desc=\"q\" ; dur=7 ,redis;dur=.5");
        assert_eq!(t, ServerTiming { total_us: None, redis_us: Some(500), db_us: Some(7000) });
    }

    #[test]
    fn durations_read_as_integers_match_the_float_reading() {
        let float = |v: &str| v.parse::<f64>().ok().filter(|ms| *ms >= 0.0).map(|ms| (ms * 1000.0).round() as u64);
        for v in ["0", "0.0", "0.001", "0.080", "0.157", "0.5", "1.000", "12.5", "999.999", "30000", "86400000.125"] {
            assert_eq!(micros_of_ms(v), float(v), "{v}");
        }
        // More decimals, exponents and the rest go the float way; what is not a number ≥ 0 is none.
        for (v, us) in [("0.1234", Some(123)), ("0.0005", Some(1)), ("1e3", Some(1_000_000)), ("2.", Some(2000))] {
            assert_eq!(micros_of_ms(v), us, "{v}");
        }
        for v in ["", ".", "-1", "-0.5", "abc", "1.2.3", "NaN", "inf", "1_000"] {
            assert_eq!(micros_of_ms(v), None, "{v}");
        }
    }

    #[test]
    fn server_timing_is_read_only_when_asked() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-cache", http::HeaderValue::from_static("HIT"));
        headers.insert("server-timing", http::HeaderValue::from_static("total;dur=0.200, redis;dur=0.150"));
        let reply = Reply { status: 200, headers, body: Bytes::new() };
        let mut result = LoadResult::empty();
        result.record(false, "/p", &reply, Duration::from_micros(400), false);
        assert_eq!((result.reads.len(), result.x_cache.hit, result.server_total.len()), (1, 1, 0));
        result.record(false, "/p", &reply, Duration::from_micros(400), true);
        assert_eq!((result.reads.len(), result.x_cache.hit, result.server_total.len()), (2, 2, 1));
        assert_eq!(result.server_redis.max(), 150);
    }

    #[test]
    fn x_cache_values_are_counted() {
        let mut c = XCacheCounts::default();
        for (v, level) in [
            (Some("HIT"), Some("L1")),
            (Some("HIT"), Some("L2")),
            (Some("MISS"), None),
            (Some("BYPASS"), None),
            (None, None),
            (Some("weird"), None),
        ] {
            c.count(v, level);
        }
        assert_eq!(c, XCacheCounts { hit: 2, miss: 1, bypass: 1, none: 2, l1: 1, l2: 1 });
    }
}
