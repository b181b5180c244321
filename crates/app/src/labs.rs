//! The dashboard's experiments, each with real requests through the real cache: background traffic (for the
//! live charts and the eviction experiment), a stampede of concurrent misses on one key, and the limits that
//! keep them bounded. Their HTTP side is `http::labs`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cache::{Outcome, Via};
use crate::catalog::Target;
use crate::error::{Error, Result};
use crate::state::AppState;

/// The longest background traffic one click starts.
pub const MAX_TRAFFIC: Duration = Duration::from_secs(120);
/// Requests per second of the background traffic, over all its workers: enough to draw the charts and fill
/// Redis, gentle enough for a laptop.
pub const TRAFFIC_RATE: u32 = 400;
const TRAFFIC_WORKERS: u32 = 4;
/// The hot set: the aggregates and this many products.
const HOT_PRODUCTS: i32 = 50;

/// Concurrent requests a stampede may fire.
pub const MAX_STAMPEDE: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// The category stats, the top list and products 1 to 50, chosen uniformly: a working set that fits.
    Hot,
    /// Every product id, uniformly: a working set as large as the catalogue.
    Uniform,
}

impl Pattern {
    fn pick(self, max_id: i32) -> Target {
        let n = match self {
            Pattern::Hot => rand::random_range(0..HOT_PRODUCTS + 2),
            Pattern::Uniform => rand::random_range(2..max_id.max(1) + 2),
        };
        match n {
            0 => Target::Categories,
            1 => Target::Top { limit: 10 },
            n => Target::Product { id: n - 1 },
        }
    }
}

/// Requests made by one run, by outcome.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    fn add(&self, result: &Result<crate::cache::Cached>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let counter = match result.as_ref().map(|c| c.outcome) {
            Ok(Outcome::Hit(_)) => &self.hits,
            Ok(Outcome::Miss) => &self.misses,
            // A product deleted meanwhile is a normal answer, not a failure of the cache.
            Err(Error::NotFound(_)) => &self.misses,
            _ => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

struct Run {
    pattern: Pattern,
    started: Instant,
    duration: Duration,
    stop: CancellationToken,
    counts: Arc<Counts>,
    /// Set when the run ended, by time or by a stop.
    ended: Arc<Mutex<Option<Instant>>>,
}

/// The background traffic of one replica: at most one run at a time.
#[derive(Default)]
pub struct Traffic {
    run: Mutex<Option<Run>>,
}

#[derive(Debug, Serialize)]
pub struct TrafficStatus {
    pub running: bool,
    pub pattern: Option<Pattern>,
    pub seconds: Option<u64>,
    pub elapsed_ms: u64,
    pub remaining_ms: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub rate_limit_per_sec: u32,
}

impl Traffic {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Run>> {
        self.run.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a run of `duration` (at most [`MAX_TRAFFIC`]); busy while one runs.
    pub async fn start(state: &AppState, pattern: Pattern, duration: Duration) -> Result<TrafficStatus> {
        if duration.is_zero() || duration > MAX_TRAFFIC {
            return Err(Error::bad_request(format!("seconds must be from 1 to {}", MAX_TRAFFIC.as_secs())));
        }
        let max_id = match pattern {
            Pattern::Uniform => state.db.max_product_id().await?,
            Pattern::Hot => HOT_PRODUCTS,
        };
        let run = {
            let mut slot = state.traffic.lock();
            if slot.as_ref().is_some_and(|r| r.ended.lock().unwrap_or_else(|e| e.into_inner()).is_none()) {
                return Err(Error::Busy { what: "background traffic" });
            }
            let run = Run {
                pattern,
                started: Instant::now(),
                duration,
                stop: state.shutdown.child_token(),
                counts: Arc::default(),
                ended: Arc::default(),
            };
            let handles = (run.stop.clone(), run.counts.clone(), run.ended.clone());
            *slot = Some(run);
            handles
        };
        let (stop, counts, ended) = run;
        tracing::info!(?pattern, seconds = duration.as_secs(), "background traffic started");
        let state_ = state.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + duration;
            let workers = (0..TRAFFIC_WORKERS).map(|_| {
                let (state, stop, counts) = (state_.clone(), stop.clone(), counts.clone());
                async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(1) * TRAFFIC_WORKERS / TRAFFIC_RATE);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep_until(deadline) => return,
                            _ = tick.tick() => {}
                        }
                        let result = pattern.pick(max_id).fetch(&state, Via::Cache).await;
                        counts.add(&result);
                    }
                }
            });
            futures::future::join_all(workers).await;
            *ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            tracing::info!(requests = counts.requests.load(Ordering::Relaxed), "background traffic ended");
        });
        Ok(state.traffic.status())
    }

    /// Stops the run, if any; its figures stay.
    pub fn stop(&self) -> TrafficStatus {
        if let Some(run) = self.lock().as_ref() {
            run.stop.cancel();
        }
        self.status()
    }

    pub fn status(&self) -> TrafficStatus {
        let slot = self.lock();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        match slot.as_ref() {
            None => TrafficStatus {
                running: false,
                pattern: None,
                seconds: None,
                elapsed_ms: 0,
                remaining_ms: 0,
                requests: 0,
                hits: 0,
                misses: 0,
                errors: 0,
                rate_limit_per_sec: TRAFFIC_RATE,
            },
            Some(run) => {
                let ended = *run.ended.lock().unwrap_or_else(|e| e.into_inner());
                let stopping = run.stop.is_cancelled();
                let elapsed = ended.unwrap_or_else(Instant::now).duration_since(run.started);
                let running = ended.is_none() && !stopping;
                TrafficStatus {
                    running,
                    pattern: Some(run.pattern),
                    seconds: Some(run.duration.as_secs()),
                    elapsed_ms: elapsed.as_millis() as u64,
                    remaining_ms: if running { run.duration.saturating_sub(elapsed).as_millis() as u64 } else { 0 },
                    requests: load(&run.counts.requests),
                    hits: load(&run.counts.hits),
                    misses: load(&run.counts.misses),
                    errors: load(&run.counts.errors),
                    rate_limit_per_sec: TRAFFIC_RATE,
                }
            }
        }
    }
}

/// What a stampede did.
#[derive(Debug, Serialize)]
pub struct Stampede {
    pub requests: u32,
    pub single_flight: bool,
    /// Requests that queried PostgreSQL themselves.
    pub database_queries: u32,
    /// Misses answered by another request's query (single-flight).
    pub coalesced: u32,
    pub hits: u32,
    pub misses: u32,
    /// Requests that failed, or whose cache lookup failed.
    pub errors: u32,
    pub key: String,
    pub elapsed_ms: f64,
    pub db_delay_ms: u64,
}

/// Removes `target`'s entry, then reads it `requests` times at once through the cache, with single-flight on or
/// off for these reads.
pub async fn stampede(state: &AppState, target: &Target, requests: u32, single_flight: bool) -> Result<Stampede> {
    if !(2..=MAX_STAMPEDE).contains(&requests) {
        return Err(Error::bad_request(format!("requests must be from 2 to {MAX_STAMPEDE}, got {requests}")));
    }
    let key = state.cache.keyspace().full(&target.key());
    state.cache.unlink_pattern(&key).await.map_err(Error::cache_unavailable)?;
    let via = if single_flight { Via::Cache } else { Via::CacheUncoalesced };
    let started = Instant::now();
    let results = futures::future::join_all((0..requests).map(|_| target.fetch(state, via))).await;
    let elapsed = started.elapsed();
    let mut s = Stampede {
        requests,
        single_flight,
        database_queries: 0,
        coalesced: 0,
        hits: 0,
        misses: 0,
        errors: 0,
        key,
        elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        db_delay_ms: state.db.delay().as_millis() as u64,
    };
    for result in &results {
        match result {
            Ok(cached) => {
                if cached.db_time.is_some() {
                    s.database_queries += 1;
                }
                match cached.outcome {
                    Outcome::Hit(_) => s.hits += 1,
                    Outcome::Miss if cached.db_time.is_none() => {
                        s.misses += 1;
                        s.coalesced += 1;
                    }
                    Outcome::Miss => s.misses += 1,
                    Outcome::Bypass | Outcome::Error => s.errors += 1,
                }
            }
            Err(_) => s.errors += 1,
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_picks_stay_in_the_hot_set_and_uniform_covers_the_catalogue() {
        let mut seen_top = false;
        for _ in 0..2_000 {
            match Pattern::Hot.pick(5_000) {
                Target::Product { id } => assert!((1..=HOT_PRODUCTS).contains(&id), "{id}"),
                Target::Top { limit } => {
                    assert_eq!(limit, 10);
                    seen_top = true;
                }
                Target::Categories => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(seen_top);
        let ids: Vec<i32> = (0..20_000)
            .map(|_| match Pattern::Uniform.pick(5_000) {
                Target::Product { id } => id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(ids.iter().all(|id| (1..=5_000).contains(id)));
        assert!(ids.iter().any(|&id| id > 4_900) && ids.iter().any(|&id| id < 100));
    }
}
