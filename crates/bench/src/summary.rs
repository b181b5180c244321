//! The maths of the report: latency percentiles from HDR histograms (recorded in microseconds), speedups,
//! reductions and hit ratios. Pure functions, so they are tested on exact numbers.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Recorded values are microseconds, from 1 µs to 60 s, with 3 significant digits.
pub const HIGHEST_US: u64 = 60_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty histogram with the bench's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS).expect("constant bounds within hdrhistogram's limits")
}

/// Percentiles of one set of timings, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// `None` when nothing was recorded.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// `a / b`, or `None` when it means nothing (b is zero, either is missing or not finite).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    let r = a / b;
    (b != 0.0 && r.is_finite()).then_some(r)
}

/// How much smaller `after` is than `before`, in percent (100 = all gone; negative = it grew).
pub fn reduction_pct(before: f64, after: f64) -> Option<f64> {
    ratio(before - after, before).map(|r| r * 100.0)
}

/// Per-second rate of `count` over `secs`.
pub fn per_second(count: f64, secs: f64) -> f64 {
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// The cache counters of `/api/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub bypasses: u64,
}

impl Counters {
    /// What happened between two snapshots. A flush resets the app's counters to zero: when a counter went
    /// down, everything it shows now happened after the reset.
    pub fn since(self, before: Counters) -> Counters {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Counters {
            hits: d(self.hits, before.hits),
            misses: d(self.misses, before.misses),
            errors: d(self.errors, before.errors),
            bypasses: d(self.bypasses, before.bypasses),
        }
    }

    /// hits / (hits + misses + errors), as the app computes it; `None` when the cache was not asked.
    pub fn hit_ratio(self) -> Option<f64> {
        let lookups = self.hits + self.misses + self.errors;
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}

/// Increase of a monotonic counter between two readings (a restart of the app counts from zero).
pub fn counter_delta(before: f64, after: f64) -> f64 {
    if after >= before { after - before } else { after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            h.record(us).expect("in range");
        }
        let l = Latency::from_histogram(&h).expect("not empty");
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50_ms, 0.5);
        assert_eq!(l.p95_ms, 0.95);
        assert_eq!(l.p99_ms, 0.99);
        assert_eq!(l.max_ms, 1.0);
        assert!((l.mean_ms - 0.5005).abs() < 1e-9);
    }

    #[test]
    fn merged_histograms_give_the_percentiles_of_the_union() {
        let (mut a, mut b) = (new_histogram(), new_histogram());
        for _ in 0..90 {
            a.record(100).expect("in range");
        }
        for _ in 0..10 {
            b.record(2000).expect("in range");
        }
        a.add(&b).expect("same bounds");
        let l = Latency::from_histogram(&a).expect("not empty");
        assert_eq!((l.count, l.p50_ms, l.p95_ms, l.max_ms), (100, 0.1, 2.0, 2.0));
    }

    #[test]
    fn large_values_keep_three_significant_digits() {
        let mut h = new_histogram();
        h.record(12_345_678).expect("in range");
        let l = Latency::from_histogram(&h).expect("not empty");
        assert!((l.max_ms - 12_345.678).abs() / 12_345.678 < 0.001, "{}", l.max_ms);
    }

    #[test]
    fn empty_histograms_have_no_percentiles() {
        assert_eq!(Latency::from_histogram(&new_histogram()), None);
    }

    #[test]
    fn ratios_and_reductions() {
        assert_eq!(ratio(10.0, 4.0), Some(2.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(0.0, 0.0), None);
        assert_eq!(reduction_pct(200.0, 50.0), Some(75.0));
        assert_eq!(reduction_pct(200.0, 0.0), Some(100.0));
        assert_eq!(reduction_pct(100.0, 150.0), Some(-50.0));
        assert_eq!(reduction_pct(0.0, 0.0), None);
        assert_eq!(per_second(500.0, 2.0), 250.0);
        assert_eq!(per_second(5.0, 0.0), 0.0);
    }

    #[test]
    fn hit_ratio_from_counter_deltas() {
        let before = Counters { hits: 100, misses: 10, errors: 0, bypasses: 5 };
        let after = Counters { hits: 1090, misses: 20, errors: 0, bypasses: 5 };
        let d = after.since(before);
        assert_eq!(d, Counters { hits: 990, misses: 10, errors: 0, bypasses: 0 });
        assert_eq!(d.hit_ratio(), Some(0.99));
        assert_eq!(Counters::default().hit_ratio(), None);
    }

    #[test]
    fn a_reset_between_snapshots_counts_from_zero() {
        let before = Counters { hits: 5000, misses: 50, errors: 1, bypasses: 0 };
        let after = Counters { hits: 30, misses: 10, errors: 0, bypasses: 0 };
        assert_eq!(after.since(before), Counters { hits: 30, misses: 10, errors: 0, bypasses: 0 });
        assert_eq!(counter_delta(100.0, 130.0), 30.0);
        assert_eq!(counter_delta(100.0, 7.0), 7.0);
    }
}
