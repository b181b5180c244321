//! Runs, in the order that keeps them fair: each measured run is framed by snapshots of the app's counters and
//! metrics, and cached runs follow a warm-up.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::app::{AppClient, Delta, L1State};
use crate::calibrate::References;
use crate::client::Target;
use crate::load::{self, LoadResult, LoadSpec};
use crate::report::{AppRun, Calibration, Comparison, MissPath, RunStats};
use crate::summary::Latency;
use crate::workload::{CacheMode, Distribution, Endpoint, KeySampler, SEEDED_PRODUCTS, Workload};

/// The options every run shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    pub distribution: Distribution,
    pub zipf_exponent: f64,
    pub keys: u64,
    pub write_ratio: f64,
    /// Draw progress bars (on stderr, only when it is a terminal).
    pub progress: bool,
    /// Print a line per run on stderr.
    pub verbose: bool,
    /// The app's `ADMIN_TOKEN`, for the flush.
    pub admin_token: Option<String>,
}

impl Plan {
    /// Small defaults, for tests and embedding.
    pub fn quick(concurrency: usize, duration: Duration) -> Plan {
        Plan {
            concurrency,
            duration,
            warmup: Duration::from_millis(300),
            max_requests: None,
            timeout: Duration::from_secs(10),
            distribution: Distribution::Zipf,
            zipf_exponent: 1.0,
            keys: SEEDED_PRODUCTS,
            write_ratio: 0.0,
            progress: false,
            verbose: false,
            admin_token: None,
        }
    }
}

/// Runs measurements against one app.
pub struct Runner {
    pub app: AppClient,
    pub plan: Plan,
}

impl Runner {
    pub fn new(target: Target, plan: Plan) -> Runner {
        let mut app = AppClient::new(target);
        app.admin_token = plan.admin_token.clone();
        Runner { app, plan }
    }

    fn workload(&self, endpoint: Endpoint, cache: CacheMode, write_ratio: f64) -> anyhow::Result<Workload> {
        let p = &self.plan;
        let sampler = KeySampler::new(p.distribution, endpoint.key_count(p.keys), p.zipf_exponent)?;
        let write_sampler = KeySampler::new(p.distribution, p.keys, p.zipf_exponent)?;
        Ok(Workload { endpoint, cache, sampler, write_sampler, write_ratio })
    }

    fn progress(&self, label: &str, duration: Duration, max_requests: Option<u64>) -> ProgressBar {
        if !self.plan.progress {
            return ProgressBar::hidden();
        }
        let (len, template) = match max_requests {
            Some(n) if n > 0 => (n, "{prefix:>28} [{bar:30}] {pos}/{len} {msg}"),
            _ => (duration.as_millis() as u64, "{prefix:>28} [{bar:30}] {elapsed}/{duration} {msg}"),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        bar
    }

    /// One measured run with the app's counters and metrics read before and after.
    pub async fn measure(
        &self,
        label: &str,
        workload: Workload,
        concurrency: usize,
        duration: Duration,
        max_requests: Option<u64>,
    ) -> anyhow::Result<RunStats> {
        let bar = self.progress(label, duration, max_requests);
        let (result, delta) = self.slice(&workload, concurrency, duration, max_requests, &bar, true).await?;
        Ok(self.stats(label, &workload, concurrency, &result, &delta))
    }

    /// Runs that are compared with each other, taken in turns: `rounds` rounds of slices in the order A B, B A,
    /// A B ..., so that a change in the machine's speed during the measurement weighs on all of them alike, the
    /// cache primed ([`Runner::prime`]) before each round. Each run's figures add up its slices.
    /// `Server-Timing` is not read: a run that gets it would be charged for the load generator's reading of it
    /// against one that does not (`/healthz`).
    pub async fn alternate(
        &self,
        runs: &[(&str, Workload)],
        concurrency: usize,
        rounds: crate::calibrate::Rounds,
    ) -> anyhow::Result<Vec<RunStats>> {
        let (each, total) = (rounds.each, rounds.total_slices());
        let prime = async || self.prime().await;
        let turns = crate::calibrate::in_turns(runs.len(), rounds.rounds, rounds.slices.max(1), prime, async |i, s| {
            let (label, workload) = &runs[i];
            let bar = self.progress(&format!("{label} {}/{total}", s + 1), each, None);
            self.slice(workload, concurrency, each, None, &bar, false).await
        })
        .await?;
        Ok(runs
            .iter()
            .zip(turns)
            .filter_map(|((label, w), turns)| {
                let t = turns?;
                let mut stats = self.stats(label, w, concurrency, &t.result, &t.delta);
                stats.slice_requests_per_s = t.slice_requests_per_s;
                Some(stats)
            })
            .collect())
    }

    /// After a flush, every product (up to the plan's keys) read once through the app, unmeasured, so Redis (and
    /// L1, when on) holds a fresh entry of each id the load draws: done before each round of the runs taken in
    /// turns, so that no round reads an entry near its expiry.
    pub async fn prime(&self) -> anyhow::Result<()> {
        self.app.flush().await?;
        let products = self.plan.keys.min(SEEDED_PRODUCTS);
        let spec = LoadSpec {
            workload: products_in_order(products, CacheMode::On)?,
            concurrency: self.plan.concurrency.clamp(1, 8),
            duration: Duration::from_secs(30),
            max_requests: Some(products),
            timeout: self.plan.timeout,
            server_timing: false,
        };
        let result = load::run(&self.app.target, &spec, &ProgressBar::hidden()).await?;
        if result.errors() > 0 || result.answered() < products {
            anyhow::bail!(
                "reading the {products} products to prime the cache: {} answered, {} errors{}",
                result.answered(),
                result.errors(),
                result.first_error.map(|e| format!(", the first: {e}")).unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn slice(
        &self,
        workload: &Workload,
        concurrency: usize,
        duration: Duration,
        max_requests: Option<u64>,
        bar: &ProgressBar,
        server_timing: bool,
    ) -> anyhow::Result<(LoadResult, Delta)> {
        let spec = LoadSpec {
            workload: workload.clone(),
            concurrency,
            duration,
            max_requests,
            timeout: self.plan.timeout,
            server_timing,
        };
        let before = self.app.snapshot().await?;
        let result = load::run(&self.app.target, &spec, bar).await?;
        let after = self.app.snapshot().await?;
        Ok((result, Delta::between(&before, &after)))
    }

    fn stats(&self, label: &str, w: &Workload, concurrency: usize, result: &LoadResult, delta: &Delta) -> RunStats {
        let stats = RunStats::new(w.endpoint, w.cache, concurrency, w.write_ratio, result, delta);
        if self.plan.verbose {
            eprintln!("  {label:<36} {}", one_line(&stats));
        }
        if let Some(e) = &stats.first_error {
            eprintln!("  {label}: {} errors, the first: {e}", stats.errors);
        }
        stats
    }

    /// Requests, unmeasured, so the cache holds what the next run reads.
    pub async fn warm(&self, workload: Workload) -> anyhow::Result<()> {
        if self.plan.warmup.is_zero() {
            return Ok(());
        }
        let spec = LoadSpec {
            workload,
            concurrency: self.plan.concurrency,
            duration: self.plan.warmup,
            max_requests: None,
            timeout: self.plan.timeout,
            server_timing: false,
        };
        load::run(&self.app.target, &spec, &self.progress("warm-up", self.plan.warmup, None)).await?;
        Ok(())
    }

    fn run_duration(&self) -> Duration {
        self.plan.duration
    }

    /// `cache=off`, then (after a warm-up) through the cache; either may be skipped.
    pub async fn compare(&self, endpoint: Endpoint, database: bool, cache: bool) -> anyhow::Result<Comparison> {
        let c = self.plan.concurrency;
        let (d, n) = (self.run_duration(), self.plan.max_requests);
        let wr = self.plan.write_ratio;
        let db = if database {
            let w = self.workload(endpoint, CacheMode::Off, wr)?;
            Some(self.measure(&format!("{} database", endpoint.route()), w, c, d, n).await?)
        } else {
            None
        };
        let cached = if cache {
            self.warm(self.workload(endpoint, CacheMode::On, 0.0)?).await?;
            let w = self.workload(endpoint, CacheMode::On, wr)?;
            Some(self.measure(&format!("{} cache", endpoint.route()), w, c, d, n).await?)
        } else {
            None
        };
        Ok(Comparison::new(endpoint, db, cached))
    }

    /// `/healthz`: a static response through the same server stack, the ceiling of this machine.
    pub async fn ceiling(&self) -> anyhow::Result<RunStats> {
        let w = self.workload(Endpoint::Healthz, CacheMode::Off, 0.0)?;
        self.measure("GET /healthz (ceiling)", w, self.plan.concurrency, self.run_duration(), self.plan.max_requests)
            .await
    }

    /// Product ids 1..=N (N = keys, at most the seeded 500), one connection, one request at a time: after a
    /// flush, each id from PostgreSQL (`cache=off`) and through the cache (a miss), the two in turns; then each
    /// id again through the cache (a hit).
    pub async fn miss_path(&self) -> anyhow::Result<MissPath> {
        let n = self.plan.keys.min(SEEDED_PRODUCTS);
        let workload = |cache| products_in_order(n, cache);
        self.app.flush().await?;
        let pairs: Vec<(String, String)> = (1..=n)
            .map(|id| (Endpoint::Product.path(id, CacheMode::Off), Endpoint::Product.path(id, CacheMode::On)))
            .collect();
        let before = self.app.snapshot().await?;
        let (database, miss) = load::paired(&self.app.target, &pairs, self.plan.timeout).await?;
        let after = self.app.snapshot().await?;
        // The app's counters and metrics cover both kinds together: each run gets only what is its own.
        let both = Delta::between(&before, &after);
        let of_misses = Delta { counters: both.counters, ..Delta::default() };
        let database = self.stats("miss path: database", &workload(CacheMode::Off)?, 1, &database, &Delta::default());
        let miss = self.stats("miss path: misses", &workload(CacheMode::On)?, 1, &miss, &of_misses);
        // Bounded by the count; the duration is only a safety net.
        let limit = Duration::from_secs(60);
        let hit = self.measure("miss path: hits", workload(CacheMode::On)?, 1, limit, Some(n)).await?;
        Ok(MissPath::new(database, miss, hit))
    }

    /// Product reads through a warm cache with `write_ratio` of writes.
    pub async fn write_mix(&self, write_ratio: f64) -> anyhow::Result<RunStats> {
        self.warm(self.workload(Endpoint::Product, CacheMode::On, 0.0)?).await?;
        let w = self.workload(Endpoint::Product, CacheMode::On, write_ratio)?;
        let label = format!("product, {:.0}% writes", write_ratio * 100.0);
        self.measure(&label, w, self.plan.concurrency, self.run_duration(), self.plan.max_requests).await
    }

    /// `/healthz` and cached product hits (after a warm-up), in turns: the L1 run of the standard scenario.
    pub async fn ceiling_and_hits(&self) -> anyhow::Result<(RunStats, RunStats)> {
        self.warm(self.workload(Endpoint::Product, CacheMode::On, 0.0)?).await?;
        let healthz = self.workload(Endpoint::Healthz, CacheMode::Off, 0.0)?;
        let product = self.workload(Endpoint::Product, CacheMode::On, 0.0)?;
        let hits = format!("{} cache", Endpoint::Product.route());
        let runs = [("GET /healthz (ceiling)", healthz), (hits.as_str(), product)];
        let rounds = crate::calibrate::Rounds::standard(self.run_duration());
        let mut stats = self.alternate(&runs, self.plan.concurrency, rounds).await?;
        match (stats.pop(), stats.pop()) {
            (Some(hits), Some(ceiling)) => Ok((ceiling, hits)),
            _ => anyhow::bail!("the alternating run returned no figures"),
        }
    }

    /// Cached product hits (after a warm-up) at [`BY_CONNECTIONS`] connections below the plan's, half a run each.
    pub async fn hits_by_connections(&self) -> anyhow::Result<Vec<RunStats>> {
        let mut runs = Vec::new();
        self.warm(self.workload(Endpoint::Product, CacheMode::On, 0.0)?).await?;
        for &c in BY_CONNECTIONS.iter().filter(|&&c| c < self.plan.concurrency) {
            let w = self.workload(Endpoint::Product, CacheMode::On, 0.0)?;
            let label = format!("{} cache, {c} connections", Endpoint::Product.route());
            runs.push(self.measure(&label, w, c, self.run_duration() / 2, self.plan.max_requests).await?);
        }
        Ok(runs)
    }

    pub async fn l1_state(&self) -> anyhow::Result<L1State> {
        Ok(L1State::from_stats(&self.app.stats().await?))
    }

    pub async fn rss_bytes(&self) -> anyhow::Result<Option<f64>> {
        Ok(self.app.snapshot().await?.rss_bytes)
    }
}

/// What the standard scenario measured on one app.
pub struct StandardResult {
    pub endpoints: Vec<Comparison>,
    pub miss_path: MissPath,
    pub write_mix: Vec<RunStats>,
    pub app: AppRun,
    pub calibration: Option<Calibration>,
}

/// The endpoints of the standard scenario, in order.
pub const STANDARD_ENDPOINTS: &[Endpoint] = &[Endpoint::Product, Endpoint::Categories, Endpoint::Search, Endpoint::Top];
/// Write shares of the standard scenario's mixed runs (0 % is the cached product run).
pub const STANDARD_WRITE_RATIOS: &[f64] = &[0.01, 0.10];

/// Ceiling, every endpoint both ways, the app against the references (when given), the miss path, writes against the hit ratio, hits at fewer connections, memory.
/// With `refs`, also the app against the reference servers, in turns, before the miss path flushes the cache.
pub async fn standard(runner: &Runner, name: &str, refs: Option<&References>) -> anyhow::Result<StandardResult> {
    runner.app.flush().await?;
    let l1 = runner.l1_state().await?;
    let ceiling = runner.ceiling().await?;
    let mut endpoints = Vec::new();
    for e in STANDARD_ENDPOINTS {
        endpoints.push(runner.compare(*e, true, true).await?);
    }
    let calibration = match refs {
        Some(refs) => Some(crate::calibrate::calibrate(runner, refs).await?),
        None => None,
    };
    let miss_path = runner.miss_path().await?;
    let product_hit = endpoints.first().and_then(|c| c.cache.clone());
    let mut write_mix: Vec<RunStats> = product_hit.iter().cloned().collect();
    for r in STANDARD_WRITE_RATIOS {
        write_mix.push(runner.write_mix(*r).await?);
    }
    let by_connections = runner.hits_by_connections().await?;
    let rss_bytes = runner.rss_bytes().await?;
    let app = AppRun { name: name.to_owned(), l1, ceiling: Some(ceiling), product_hit, by_connections, rss_bytes };
    Ok(StandardResult { endpoints, miss_path, write_mix, app, calibration })
}

/// Connections of the lighter hit runs of the standard scenario.
pub const BY_CONNECTIONS: &[usize] = &[4, 8, 16];

/// Slices per run when the ceiling and the L1 hits are measured in turns: as many as the calibrated runs have,
/// for the same reason.
pub const CEILING_SLICES: u32 = crate::calibrate::CALIBRATION_SLICES;

/// Product ids 1..=n, each once, in order.
fn products_in_order(n: u64, cache: CacheMode) -> anyhow::Result<Workload> {
    Ok(Workload {
        endpoint: Endpoint::Product,
        cache,
        sampler: KeySampler::new(Distribution::Sequential, n, 0.0)?,
        write_sampler: KeySampler::new(Distribution::Sequential, n, 0.0)?,
        write_ratio: 0.0,
    })
}

/// The short run on a second app process (L1 on): the ceiling and product hits in turns, memory.
pub async fn hit_path_only(runner: &Runner, name: &str) -> anyhow::Result<AppRun> {
    runner.app.flush().await?;
    let l1 = runner.l1_state().await?;
    let (ceiling, product_hit) = runner.ceiling_and_hits().await?;
    let rss_bytes = runner.rss_bytes().await?;
    Ok(AppRun {
        name: name.to_owned(),
        l1,
        ceiling: Some(ceiling),
        product_hit: Some(product_hit),
        by_connections: Vec::new(),
        rss_bytes,
    })
}

/// `12,345 req/s  p50 1.23  p99 4.56 ms  errors 0  hit 99.9%`
pub fn one_line(r: &RunStats) -> String {
    use crate::report::{fmt_int, fmt_ms, fmt_pct};
    let mut s = format!("{:>8} req/s", fmt_int(r.requests_per_s));
    if let Some(Latency { p50_ms, p99_ms, .. }) = r.latency {
        s.push_str(&format!("  p50 {} ms  p99 {} ms", fmt_ms(p50_ms), fmt_ms(p99_ms)));
    }
    if let Some(l) = r.server {
        s.push_str(&format!("  server p50 {} ms", fmt_ms(l.p50_ms)));
    }
    if let Some(h) = r.hit_ratio {
        s.push_str(&format!("  hits {}", fmt_pct(h * 100.0)));
    }
    if let Some(q) = r.db_queries_per_s {
        s.push_str(&format!("  DB {}/s", fmt_int(q)));
    }
    if let Some(c) = r.app_cpu_us_per_request {
        s.push_str(&format!("  app CPU {} µs/req", fmt_int(c)));
    }
    if r.errors > 0 {
        s.push_str(&format!("  errors {}", fmt_int(r.errors as f64)));
    }
    s
}
