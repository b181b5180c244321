//! One picture of every replica. Every [`INTERVAL`] each replica publishes its counters and recent requests to
//! Redis and reads everyone else's (one round trip, in `cache::shared`), so every dashboard shows the same
//! totals, a per-replica breakdown, and who answered each recent request. The same exchange carries the flush
//! epoch (a flush anywhere resets every replica's counters) and the artificial database delay set from a
//! dashboard. Each exchange also adds a point to the timeline of the last five minutes (the live charts).
//!
//! Nothing here runs on the request path: requests only bump the counters they always bumped.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_demo_api::{Counters, Fleet as FleetView, FleetCounters, ReplicaCounters};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cache::Totals;
use crate::recent::{Recent, RecentRequest};
use crate::state::AppState;

/// How often replicas exchange their figures, and the timeline's step.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// The timeline's span.
pub const WINDOW: Duration = Duration::from_secs(300);
const POINTS: usize = (WINDOW.as_secs() / INTERVAL.as_secs()) as usize;
/// A report older than this is not counted: its replica stopped or cannot reach Redis.
const STALE_AFTER_MS: u64 = 10_000;
/// A report older than this is removed from Redis.
const FORGET_AFTER_MS: u64 = 60_000;

/// What a replica publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    /// The flush epoch its counters belong to.
    epoch: Option<String>,
    at_ms: u64,
    /// Since the last flush.
    counters: FleetCounters,
    /// Since start: what rates are computed from.
    totals: Totals,
    db_queries_total: u64,
    recent: Vec<RecentRequest>,
}

/// One step of the timeline: rates over the step, summed over replicas.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub at_ms: u64,
    pub hits_per_sec: f64,
    pub misses_per_sec: f64,
    pub db_queries_per_sec: f64,
    /// hits / (hits + misses + errors) over the step; `None` when there was no lookup.
    pub hit_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub interval_secs: u64,
    pub window_secs: u64,
    pub aggregated: bool,
    pub replicas: usize,
    pub points: Vec<Point>,
}

/// A replica's totals at one report: the previous one of each replica gives its rates.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at_ms: u64,
    totals: Totals,
    db_queries: u64,
}

/// Rates between two samples of one replica, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Rates {
    hits: f64,
    misses: f64,
    errors: f64,
    db_queries: f64,
}

impl Rates {
    fn between(before: &Sample, after: &Sample) -> Option<Rates> {
        if after.at_ms <= before.at_ms {
            return None;
        }
        let secs = (after.at_ms - before.at_ms) as f64 / 1000.0;
        // A replica that restarted counts from zero again: its count is all new, never a negative rate.
        let per_sec = |a: u64, b: u64| (if a >= b { a - b } else { a }) as f64 / secs;
        Some(Rates {
            hits: per_sec(after.totals.hits, before.totals.hits),
            misses: per_sec(after.totals.misses, before.totals.misses),
            errors: per_sec(after.totals.errors, before.totals.errors),
            db_queries: per_sec(after.db_queries, before.db_queries),
        })
    }

    fn point(self, at_ms: u64) -> Point {
        let lookups = self.hits + self.misses + self.errors;
        Point {
            at_ms,
            hits_per_sec: self.hits,
            misses_per_sec: self.misses,
            db_queries_per_sec: self.db_queries,
            hit_ratio: (lookups > 0.0).then(|| self.hits / lookups),
        }
    }
}

impl std::ops::Add for Rates {
    type Output = Rates;

    fn add(self, o: Rates) -> Rates {
        Rates {
            hits: self.hits + o.hits,
            misses: self.misses + o.misses,
            errors: self.errors + o.errors,
            db_queries: self.db_queries + o.db_queries,
        }
    }
}

#[derive(Default)]
struct View {
    /// The flush epoch this replica counts in; `None` until the first exchange (or before any flush).
    epoch: Option<String>,
    /// Whether an exchange has told this replica the epoch at least once.
    epoch_known: bool,
    /// Database queries at the last flush, so the published count starts from zero too.
    db_queries_at_flush: u64,
    /// The other replicas' last fresh reports.
    others: Vec<(String, Report)>,
    aggregated: bool,
    /// Redis's `maxmemory` before the eviction experiment first shrank it, kept here too: with a tiny
    /// `maxmemory` and `allkeys-lru`, Redis may evict the key that remembers it.
    configured_maxmemory: Option<u64>,
    /// Each replica's last sample and rates.
    last: HashMap<String, (Sample, Rates)>,
    points: VecDeque<Point>,
}

pub struct Fleet {
    id: String,
    view: Mutex<View>,
    /// Wakes the exchange early (after a flush), so other replicas hear of it at once.
    wake: Notify,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Fleet {
    pub fn new(id: &str) -> Self {
        Fleet { id: id.to_owned(), view: Mutex::default(), wake: Notify::new() }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exchanges figures every [`INTERVAL`] (sooner when woken) until `shutdown`.
    pub async fn run(state: AppState, shutdown: CancellationToken) {
        loop {
            state.fleet.exchange(&state).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = state.fleet.wake.notified() => {}
            }
        }
    }

    /// This replica's counters since the last flush.
    fn own_counters(&self, state: &AppState, view: &View) -> FleetCounters {
        FleetCounters {
            counters: state.cache.counters(),
            db_queries: state.db.queries().saturating_sub(view.db_queries_at_flush),
        }
    }

    async fn exchange(&self, state: &AppState) {
        let at_ms = now_ms();
        let report = {
            let view = self.view();
            Report {
                epoch: view.epoch.clone(),
                at_ms,
                counters: self.own_counters(state, &view),
                totals: state.cache.totals(),
                db_queries_total: state.db.queries(),
                recent: state.recent.snapshot(),
            }
        };
        let own = Sample { at_ms, totals: report.totals, db_queries: report.db_queries_total };
        // Serializing plain data cannot fail.
        let text = serde_json::to_string(&report).unwrap_or_default();
        match state.cache.exchange(&self.id, &text).await {
            Ok(exchange) => {
                if let Some(ms) = exchange.db_delay_ms {
                    state.db.set_delay(Duration::from_millis(ms));
                }
                let lost_maxmemory = match exchange.configured_maxmemory {
                    Some(bytes) => {
                        self.view().configured_maxmemory = Some(bytes);
                        None
                    }
                    None => self.view().configured_maxmemory,
                };
                if let Some(bytes) = lost_maxmemory {
                    let _ = state.cache.remember_configured_maxmemory(bytes).await;
                }
                let mut forgotten = Vec::new();
                let mut others = Vec::new();
                for (id, text) in exchange.reports {
                    if id == self.id {
                        continue;
                    }
                    match serde_json::from_str::<Report>(&text) {
                        Ok(r) if at_ms.saturating_sub(r.at_ms) <= STALE_AFTER_MS => others.push((id, r)),
                        Ok(r) if at_ms.saturating_sub(r.at_ms) <= FORGET_AFTER_MS => {}
                        _ => forgotten.push(id),
                    }
                }
                others.sort_by(|a, b| a.0.cmp(&b.0));
                {
                    let mut view = self.view();
                    // No epoch (none yet, or expired or evicted) says nothing: only a new token is a flush.
                    if exchange.epoch.is_some() && view.epoch != exchange.epoch {
                        if view.epoch_known {
                            // Another replica flushed: count from zero, as it does.
                            state.cache.reset_counters();
                            view.db_queries_at_flush = state.db.queries();
                            tracing::info!("counters reset: the cache was flushed on another replica");
                        }
                        view.epoch = exchange.epoch;
                    }
                    view.epoch_known = true;
                    view.aggregated = true;
                    view.others = others;
                    self.add_point(&mut view, at_ms, own);
                }
                if let Err(e) = state.cache.drop_reports(&forgotten).await {
                    tracing::debug!(error = %e, "could not remove the reports of stopped replicas");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "replica figures not exchanged: showing this replica only");
                let mut view = self.view();
                view.aggregated = false;
                view.others.clear();
                self.add_point(&mut view, at_ms, own);
            }
        }
    }

    /// Adds the timeline point of this exchange: each counted replica's rate since its previous report.
    fn add_point(&self, view: &mut View, at_ms: u64, own: Sample) {
        let mut samples: Vec<(String, Sample)> = vec![(self.id.clone(), own)];
        samples.extend(
            view.others.iter().map(|(id, r)| {
                (id.clone(), Sample { at_ms: r.at_ms, totals: r.totals, db_queries: r.db_queries_total })
            }),
        );
        let mut sum = Rates::default();
        let mut compared = false;
        let mut last = HashMap::with_capacity(samples.len());
        for (id, sample) in samples {
            let rates = match view.last.get(&id) {
                // The same report as last time (it has not published since): its last rates still hold.
                Some((prev, rates)) if prev.at_ms == sample.at_ms => *rates,
                Some((prev, _)) => Rates::between(prev, &sample).unwrap_or_default(),
                None => Rates::default(),
            };
            compared |= view.last.contains_key(&id);
            sum = sum + rates;
            last.insert(id, (sample, rates));
        }
        view.last = last;
        // The first exchange has nothing to compare with: no point rather than a made-up zero.
        if !compared {
            return;
        }
        if view.points.len() == POINTS {
            view.points.pop_front();
        }
        view.points.push_back(sum.point(at_ms));
    }

    /// Counters since the last flush: this replica's now, the others' as last published.
    pub fn counters(&self, state: &AppState) -> FleetView {
        let view = self.view();
        let at_ms = now_ms();
        let mut replicas = vec![ReplicaCounters {
            id: self.id.clone(),
            is_self: true,
            counters: self.own_counters(state, &view),
            age_ms: 0,
        }];
        replicas.extend(view.others.iter().filter(|(_, r)| r.epoch == view.epoch).map(|(id, r)| ReplicaCounters {
            id: id.clone(),
            is_self: false,
            counters: r.counters,
            age_ms: at_ms.saturating_sub(r.at_ms),
        }));
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        let totals = replicas
            .iter()
            .fold(FleetCounters { counters: Counters::new(0, 0, 0, 0), db_queries: 0 }, |sum, r| sum + r.counters);
        FleetView { aggregated: view.aggregated, totals, replicas }
    }

    /// The recent requests of every counted replica, newest first.
    pub fn recent(&self, recent: &Recent) -> Vec<RecentRequest> {
        let view = self.view();
        Recent::merge(std::iter::once(recent.snapshot()).chain(view.others.iter().map(|(_, r)| r.recent.clone())))
    }

    pub fn timeline(&self) -> Timeline {
        let view = self.view();
        Timeline {
            interval_secs: INTERVAL.as_secs(),
            window_secs: WINDOW.as_secs(),
            aggregated: view.aggregated,
            replicas: 1 + view.others.len(),
            points: view.points.iter().copied().collect(),
        }
    }

    /// Redis's `maxmemory` before the eviction experiment first shrank it, as far as this replica knows.
    pub fn configured_maxmemory(&self) -> Option<u64> {
        self.view().configured_maxmemory
    }

    pub fn remember_configured_maxmemory(&self, bytes: u64) {
        self.view().configured_maxmemory.get_or_insert(bytes);
    }

    /// After a flush on this replica: a new epoch for every replica, announced at once. Counters were reset by
    /// the flush itself. Without Redis there is nobody to tell.
    pub async fn flushed(&self, state: &AppState) {
        let token = format!("{:016x}", rand::random::<u64>());
        {
            let mut view = self.view();
            view.db_queries_at_flush = state.db.queries();
            view.epoch = Some(token.clone());
        }
        if let Err(e) = state.cache.new_epoch(&token).await {
            tracing::debug!(error = %e, "flush epoch not shared");
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, hits: u64, misses: u64, db_queries: u64) -> Sample {
        Sample { at_ms, totals: Totals { hits, misses, bypasses: 0, errors: 0 }, db_queries }
    }

    #[test]
    fn rates_are_per_second_between_reports() {
        let r = Rates::between(&sample(1_000, 10, 2, 2), &sample(3_000, 30, 6, 6)).expect("rates");
        assert_eq!(r, Rates { hits: 10.0, misses: 2.0, errors: 0.0, db_queries: 2.0 });
        let p = r.point(3_000);
        assert_eq!(p.hit_ratio, Some(10.0 / 12.0));
    }

    #[test]
    fn a_restart_gives_no_negative_rate_and_no_lookups_no_ratio() {
        let r = Rates::between(&sample(1_000, 500, 20, 20), &sample(3_000, 4, 0, 0)).expect("rates");
        assert_eq!(r.hits, 2.0);
        assert_eq!(r.misses, 0.0);
        assert_eq!(Rates::default().point(1).hit_ratio, None);
        assert_eq!(Rates::between(&sample(3_000, 1, 0, 0), &sample(3_000, 2, 0, 0)), None);
    }

    #[test]
    fn the_timeline_keeps_five_minutes() {
        let fleet = Fleet::new("a");
        let mut view = View::default();
        for i in 0..(POINTS as u64 + 20) {
            fleet.add_point(&mut view, i * 2_000, sample(i * 2_000, i * 10, i, i));
        }
        assert_eq!(view.points.len(), POINTS);
        assert_eq!(view.points.back().map(|p| p.hits_per_sec), Some(5.0));
        assert!(view.points.iter().zip(view.points.iter().skip(1)).all(|(a, b)| a.at_ms < b.at_ms));
    }
}
