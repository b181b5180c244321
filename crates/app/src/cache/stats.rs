//! Request counting: the counters behind `/api/stats` (reset by a flush) and `cache_requests_total`.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_demo_api::Counters;
use prometheus::IntCounter;

use super::endpoint::{ByEndpoint, Endpoint};
use super::outcome::Outcome;
use crate::metrics::Metrics;

/// One counter per outcome class; the hit counter counts hits of both levels.
#[derive(Debug, Default)]
struct ByOutcome<T> {
    hits: T,
    misses: T,
    bypasses: T,
    errors: T,
}

impl<T> ByOutcome<T> {
    fn new(mut value: impl FnMut(Outcome) -> T) -> Self {
        ByOutcome {
            hits: value(Outcome::Hit(super::Level::L2)),
            misses: value(Outcome::Miss),
            bypasses: value(Outcome::Bypass),
            errors: value(Outcome::Error),
        }
    }

    fn get(&self, o: Outcome) -> &T {
        match o {
            Outcome::Hit(_) => &self.hits,
            Outcome::Miss => &self.misses,
            Outcome::Bypass => &self.bypasses,
            Outcome::Error => &self.errors,
        }
    }
}

/// Cacheable requests by outcome since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub errors: u64,
}

pub(super) struct Stats {
    /// Since start or the last flush, for `/api/stats`.
    counters: ByOutcome<AtomicU64>,
    /// `cache_requests_total` children, resolved once so the hit path does no label lookup.
    requests: ByEndpoint<ByOutcome<IntCounter>>,
}

impl Stats {
    pub(super) fn new(metrics: &Metrics) -> Self {
        let requests =
            ByEndpoint::new(|e| ByOutcome::new(|o| metrics.cache_requests.with_label_values(&[e.label(), o.label()])));
        Stats { counters: ByOutcome::default(), requests }
    }

    pub(super) fn record(&self, endpoint: Endpoint, outcome: Outcome) {
        self.counters.get(outcome).fetch_add(1, Ordering::Relaxed);
        self.requests.get(endpoint).get(outcome).inc();
    }

    pub(super) fn reset(&self) {
        let c = &self.counters;
        for a in [&c.hits, &c.misses, &c.bypasses, &c.errors] {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// Requests by outcome since start, never reset: the sums of `cache_requests_total`, so the hit path
    /// counts nothing twice.
    pub(super) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for (_, by) in self.requests.iter() {
            t.hits += by.hits.get();
            t.misses += by.misses.get();
            t.bypasses += by.bypasses.get();
            t.errors += by.errors.get();
        }
        t
    }

    pub(super) fn snapshot(&self) -> Counters {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters::new(load(&c.hits), load(&c.misses), load(&c.bypasses), load(&c.errors))
    }
}
