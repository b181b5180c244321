//! The performance bar: each goal's threshold is written once, in [`BAR`], and every sentence that
//! states the goal is made from it. Goals without data are `NotMeasured`, never passed.

use serde::Serialize;

use super::markdown::{fmt_int, fmt_mb, fmt_ms, fmt_pct, fmt_share_range, fmt_us};
use super::types::{AppRun, Calibration, MissPath, RunStats};
use crate::app::L1State;

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

    pub(super) fn word(self) -> &'static str {
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

/// The thresholds of the bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Cache hits of one product, Redis only: at least this many requests/s…
    pub hit_rps: f64,
    /// … with a client-side p99 below this.
    pub hit_p99_ms: f64,
    /// Cache hits with the L1 on: at least this fraction of the `/healthz` ceiling.
    pub l1_of_ceiling: f64,
    /// Server-side time of a hit (`Server-Timing` total), p50 below this, alone and under load.
    pub server_hit_p50_ms: f64,
    /// What a miss may add over `cache=off`, counted in whole round trips: one round trip plus the app's own
    /// work (the key, the generation token, queueing the fill) stays under 1.5; a second round trip (an awaited
    /// fill, a second lookup) makes it 2 or more.
    pub miss_round_trips: f64,
    /// Resident memory of the app after the standard scenario, below this.
    pub rss_bytes: f64,
    /// The app's `/healthz`: at least this fraction of the static reference's requests/s, same run, and at least
    /// this fraction of its requests per CPU second (what the share would be if each server had the cores to
    /// itself; the requests/s of two servers that cost less than the load generator are mostly its own).
    pub healthz_of_static_ref: f64,
    /// Cache hits (Redis only): at least this fraction of the Redis reference's requests/s, same run…
    pub hit_of_redis_ref: f64,
    /// … and at least this fraction of the lookup reference's (the app's lookup and nothing else)…
    pub hit_of_lookup_ref: f64,
    /// … and app CPU per hit at most this multiple of the Redis reference's CPU per request.
    pub hit_cpu_of_redis_ref: f64,
}

pub const BAR: Bar = Bar {
    hit_rps: 20_000.0,
    hit_p99_ms: 5.0,
    l1_of_ceiling: 0.9,
    server_hit_p50_ms: 0.3,
    miss_round_trips: 1.5,
    rss_bytes: 50_000_000.0,
    healthz_of_static_ref: 0.9,
    hit_of_redis_ref: 0.9,
    hit_of_lookup_ref: 0.9,
    hit_cpu_of_redis_ref: 1.2,
};

/// A threshold as the goals state it: `5`, `0.3`, `1.5` (no needless decimals).
fn plain(v: f64) -> String {
    format!("{v}")
}

impl Bar {
    fn hit_rps_goal(&self) -> String {
        format!("Cache hits of `GET /api/products/{{id}}`, Redis only (L1 off): ≥ {} requests/s", fmt_int(self.hit_rps))
    }

    fn hit_p99_goal(&self) -> String {
        format!("… and p99 < {} ms", plain(self.hit_p99_ms))
    }

    pub(super) fn l1_goal(&self) -> String {
        format!(
            "Cache hits with L1 on: ≥ {}% of the `/healthz` ceiling of the same run",
            plain(self.l1_of_ceiling * 100.0)
        )
    }

    fn server_hit_goal(&self) -> String {
        format!(
            "Server-side time of a cache hit (`Server-Timing` total), p50 < {} ms, one connection",
            plain(self.server_hit_p50_ms)
        )
    }

    fn under_load_goal(&self) -> String {
        format!("… and under load: at the lightest load that reaches {} requests/s (Redis only)", fmt_int(self.hit_rps))
    }

    fn miss_goal(&self) -> &'static str {
        "A miss adds at most one Redis round trip over `cache=off` (server-side p50)"
    }

    fn rss_goal(&self) -> String {
        format!("App resident memory < {} after the standard scenario", fmt_mb_whole(self.rss_bytes))
    }

    fn healthz_ref_goal(&self) -> String {
        format!(
            "`/healthz`: ≥ {}% of the static reference's requests/s, in turns in the same run",
            plain(self.healthz_of_static_ref * 100.0)
        )
    }

    fn healthz_cpu_goal(&self) -> String {
        format!(
            "`/healthz` per CPU second of the server: ≥ {}% of the static reference's (CPU per request ≤ {}× its), in \
             turns in the same run",
            plain(self.healthz_of_static_ref * 100.0),
            fmt_against(1.0 / self.healthz_of_static_ref, 1.0 / self.healthz_of_static_ref, 2)
        )
    }

    pub(super) fn hit_ref_goal(&self) -> String {
        format!(
            "Cache hits, Redis only (L1 off): ≥ {}% of the Redis reference's requests/s, in turns in the same run",
            plain(self.hit_of_redis_ref * 100.0)
        )
    }

    fn hit_lookup_goal(&self) -> String {
        format!(
            "… and ≥ {}% of the lookup reference's (the app's lookup and nothing else), in turns in the same run",
            plain(self.hit_of_lookup_ref * 100.0)
        )
    }

    fn hit_ref_p99_goal(&self) -> String {
        format!("… and p99 < {} ms at the same time", plain(self.hit_p99_ms))
    }

    fn hit_cpu_goal(&self) -> String {
        format!("… and app CPU per hit ≤ {}× the Redis reference's per request", plain(self.hit_cpu_of_redis_ref))
    }

    /// The values the "How to read this" text quotes, by placeholder.
    pub(super) fn placeholders(&self) -> [(&'static str, String); 2] {
        [("{miss_round_trips}", plain(self.miss_round_trips)), ("{hit_rps}", fmt_int(self.hit_rps))]
    }
}

/// `50 MB`.
fn fmt_mb_whole(bytes: f64) -> String {
    format!("{} MB", plain(bytes / 1_000_000.0))
}

/// ` (slice by slice: 75.0%–85.0%; standard error 1.2 points)`: how far the machine's changes of speed moved
/// `app`'s share of `reference` within the run, and the error that scatter leaves in the share; empty for runs
/// not cut in slices.
fn slice_spread(app: &RunStats, reference: &RunStats) -> String {
    let Some(range) = app.slice_share_range(reference) else { return String::new() };
    match app.slice_share_error(reference) {
        Some(e) => format!(" (slice by slice: {}; standard error {:.1} points)", fmt_share_range(range), e * 100.0),
        None => format!(" (slice by slice: {})", fmt_share_range(range)),
    }
}

/// `33,000 of 36,000 requests/s = 91.7%`
fn share_text(app: &RunStats, reference: &RunStats, share: f64, min: f64) -> String {
    format!(
        "{} of {} requests/s = {}",
        fmt_int(app.requests_per_s),
        fmt_int(reference.requests_per_s),
        fmt_share_against(share, min)
    )
}

/// The goals measured against the reference servers; not measured without them.
fn evaluate_calibration(bar: &Bar, c: Option<&Calibration>) -> Vec<Goal> {
    let not_measured =
        |goal: String| Goal { goal, measured: "no reference servers in this run".into(), status: Status::NotMeasured };
    let Some(c) = c else {
        return [
            bar.healthz_ref_goal(),
            bar.hit_ref_goal(),
            bar.hit_lookup_goal(),
            bar.hit_ref_p99_goal(),
            bar.hit_cpu_goal(),
            bar.healthz_cpu_goal(),
        ]
        .into_iter()
        .map(not_measured)
        .collect();
    };
    let share = |goal: String, app: &RunStats, reference: &RunStats, share: Option<f64>, min: f64| match share {
        // An error answer costs a server less than the answer compared: no share of such runs is judged.
        Some(_) if app.errors + reference.errors > 0 => Goal {
            goal,
            measured: format!(
                "not judged: {} errors from the app, {} from the reference",
                fmt_int(app.errors as f64),
                fmt_int(reference.errors as f64)
            ),
            status: Status::NotMeasured,
        },
        Some(f) => {
            let mut measured = share_text(app, reference, f, min);
            measured.push_str(&slice_spread(app, reference));
            Goal { goal, measured, status: Status::from_bool(f >= min) }
        }
        None => Goal { goal, measured: "no requests answered".into(), status: Status::NotMeasured },
    };
    let mut hits = share(bar.hit_ref_goal(), &c.hits, &c.redis_ref, c.hit_share(), bar.hit_of_redis_ref);
    if let Some(f) = c.lookup_ref_share()
        && hits.status != Status::NotMeasured
    {
        // What no design that keeps the generation check can beat, beside the figure.
        hits.measured.push_str(&format!("; the lookup reference itself reached {} of it", fmt_pct(f * 100.0)));
    }
    let mut goals = vec![
        share(bar.healthz_ref_goal(), &c.healthz, &c.static_ref, c.healthz_share(), bar.healthz_of_static_ref),
        hits,
        share(bar.hit_lookup_goal(), &c.hits, &c.lookup_ref, c.lookup_share(), bar.hit_of_lookup_ref),
    ];
    goals.push(match c.hits.latency {
        Some(l) => Goal {
            goal: bar.hit_ref_p99_goal(),
            measured: format!(
                "p99 {} ms at {} connections (the reference: {} ms)",
                fmt_ms(l.p99_ms),
                c.hits.concurrency,
                c.redis_ref.latency.map_or("–".to_owned(), |r| fmt_ms(r.p99_ms))
            ),
            status: Status::from_bool(l.p99_ms < bar.hit_p99_ms),
        },
        None => Goal { goal: bar.hit_ref_p99_goal(), measured: "no hits".into(), status: Status::NotMeasured },
    });
    goals.push(match (c.hits.app_cpu_us_per_request, c.redis_ref.app_cpu_us_per_request, c.hit_cpu_ratio()) {
        (Some(app), Some(reference), Some(x)) => Goal {
            goal: bar.hit_cpu_goal(),
            measured: format!(
                "{} µs against {} µs = {}×",
                fmt_us(app),
                fmt_us(reference),
                fmt_against(x, bar.hit_cpu_of_redis_ref, 2)
            ),
            status: Status::from_bool(x <= bar.hit_cpu_of_redis_ref),
        },
        _ => Goal {
            goal: bar.hit_cpu_goal(),
            measured: "CPU time not read (servers not started by the bench)".into(),
            status: Status::NotMeasured,
        },
    });
    goals.push(match (c.healthz.app_cpu_us_per_request, c.static_ref.app_cpu_us_per_request, c.healthz_cpu_ratio()) {
        (Some(app), Some(reference), Some(x)) => {
            let share = 1.0 / x;
            Goal {
                goal: bar.healthz_cpu_goal(),
                measured: format!(
                    "{} µs against {} µs per request = {} of its requests per CPU second",
                    fmt_us(app),
                    fmt_us(reference),
                    fmt_share_against(share, bar.healthz_of_static_ref)
                ),
                status: Status::from_bool(share >= bar.healthz_of_static_ref),
            }
        }
        _ => Goal {
            goal: bar.healthz_cpu_goal(),
            measured: "CPU time not read (servers not started by the bench)".into(),
            status: Status::NotMeasured,
        },
    });
    goals
}

/// A figure judged against `limit`, with `decimals` decimals, or more where those would round it onto the limit
/// it misses or just meets: `1.23` (not the `1.2` it fails), `1.206`, `89.96`.
fn fmt_against(x: f64, limit: f64, decimals: usize) -> String {
    let mut d = decimals;
    while x != limit && d < decimals + 4 && format!("{x:.d$}") == format!("{limit:.d$}") {
        d += 1;
    }
    format!("{x:.d$}")
}

/// A share judged against `min`: `91.7%`, and `89.96%` rather than the `90.0%` it fails.
fn fmt_share_against(share: f64, min: f64) -> String {
    format!("{}%", fmt_against(share * 100.0, min * 100.0, 1))
}

pub fn evaluate_bar(apps: &[AppRun], miss_path: Option<&MissPath>, calibration: Option<&Calibration>) -> Vec<Goal> {
    let bar = BAR;
    let mut goals = Vec::new();
    let redis_only = apps.iter().find(|a| a.l1 != L1State::On);
    let hit = redis_only.and_then(|a| a.product_hit.as_ref());
    let not_measured = |goal: String, why: &str| Goal { goal, measured: why.into(), status: Status::NotMeasured };

    let goal = bar.hit_rps_goal();
    goals.push(match hit {
        Some(h) => Goal {
            goal,
            measured: format!("{} requests/s at {} connections", fmt_int(h.requests_per_s), h.concurrency),
            status: Status::from_bool(h.requests_per_s >= bar.hit_rps),
        },
        None => not_measured(goal, "no Redis-only run"),
    });
    let goal = bar.hit_p99_goal();
    goals.push(match hit.and_then(|h| h.latency) {
        Some(l) => Goal {
            goal,
            measured: format!("p99 {} ms", fmt_ms(l.p99_ms)),
            status: Status::from_bool(l.p99_ms < bar.hit_p99_ms),
        },
        None => not_measured(goal, "no Redis-only run"),
    });

    let goal = bar.l1_goal();
    goals.push(match apps.iter().find(|a| a.l1 == L1State::On) {
        Some(a) => match a.of_ceiling() {
            Some(f) => {
                let mut measured = format!(
                    "{} of {} requests/s = {}",
                    fmt_int(a.product_hit.as_ref().map_or(0.0, |h| h.requests_per_s)),
                    fmt_int(a.ceiling.as_ref().map_or(0.0, |c| c.requests_per_s)),
                    fmt_share_against(f, bar.l1_of_ceiling)
                );
                if let Some((hit, ceiling)) = a.product_hit.as_ref().zip(a.ceiling.as_ref()) {
                    measured.push_str(&slice_spread(hit, ceiling));
                }
                Goal { goal, measured, status: Status::from_bool(f >= bar.l1_of_ceiling) }
            }
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

    let goal = bar.server_hit_goal();
    goals.push(match miss_path.and_then(|m| m.hit.server) {
        Some(l) => Goal {
            goal,
            measured: format!("p50 {} ms", fmt_ms(l.p50_ms)),
            status: Status::from_bool(l.p50_ms < bar.server_hit_p50_ms),
        },
        None => not_measured(goal, "no miss-path measurement"),
    });
    let goal = bar.under_load_goal();
    let hit_runs = redis_only.map(AppRun::hit_runs).unwrap_or_default();
    let busiest = hit_runs.last().copied();
    let at = |r: &RunStats| {
        let p50 = r.server.map_or("–".to_owned(), |l| fmt_ms(l.p50_ms));
        format!("p50 {p50} ms at {} connections ({} requests/s)", r.concurrency, fmt_int(r.requests_per_s))
    };
    goals.push(match hit_runs.iter().find(|r| r.requests_per_s >= bar.hit_rps && r.server.is_some()) {
        Some(r) => {
            let mut measured = at(r);
            if let Some(b) = busiest.filter(|b| b.concurrency != r.concurrency) {
                measured.push_str(&format!("; {}", at(b)));
            }
            let ok = r.server.is_some_and(|l| l.p50_ms < bar.server_hit_p50_ms);
            Goal { goal, measured, status: Status::from_bool(ok) }
        }
        None => match busiest {
            Some(b) => Goal {
                goal,
                measured: format!("no run reached {} requests/s; {}", fmt_int(bar.hit_rps), at(b)),
                status: Status::NotMet,
            },
            None => not_measured(goal, "no Redis-only run"),
        },
    });

    let goal = bar.miss_goal().to_owned();
    goals.push(match miss_path.and_then(|m| Some((m.extra_ms?, m.round_trip_ms?, m.round_trips?))) {
        Some((extra, rt, n)) => Goal {
            goal,
            measured: format!("+{} ms = {n:.1} round trips of {} ms (the lookup)", fmt_ms(extra), fmt_ms(rt)),
            status: Status::from_bool(n < bar.miss_round_trips),
        },
        None => not_measured(goal, "no miss-path measurement"),
    });

    let goal = bar.rss_goal();
    let rss: Vec<(&str, f64)> = apps.iter().filter_map(|a| Some((a.name.as_str(), a.rss_bytes?))).collect();
    goals.push(if rss.is_empty() {
        not_measured(goal, "`process_resident_memory_bytes` not reported")
    } else {
        let measured = rss.iter().map(|(n, b)| format!("{n}: {}", fmt_mb(*b))).collect::<Vec<_>>().join("; ");
        Goal { goal, measured, status: Status::from_bool(rss.iter().all(|(_, b)| *b < bar.rss_bytes)) }
    });
    goals.extend(evaluate_calibration(&bar, calibration));
    goals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_state_their_thresholds() {
        assert_eq!(
            BAR.hit_rps_goal(),
            "Cache hits of `GET /api/products/{id}`, Redis only (L1 off): ≥ 20,000 requests/s"
        );
        assert_eq!(BAR.hit_p99_goal(), "… and p99 < 5 ms");
        assert_eq!(BAR.l1_goal(), "Cache hits with L1 on: ≥ 90% of the `/healthz` ceiling of the same run");
        assert_eq!(
            BAR.hit_ref_goal(),
            "Cache hits, Redis only (L1 off): ≥ 90% of the Redis reference's requests/s, in turns in the same run"
        );
        assert_eq!(BAR.hit_cpu_goal(), "… and app CPU per hit ≤ 1.2× the Redis reference's per request");
        assert_eq!(BAR.rss_goal(), "App resident memory < 50 MB after the standard scenario");
        let stricter = Bar { hit_rps: 25_000.0, server_hit_p50_ms: 0.25, ..BAR };
        assert!(stricter.hit_rps_goal().contains("≥ 25,000 requests/s"));
        assert!(stricter.under_load_goal().contains("reaches 25,000 requests/s"));
        assert!(stricter.server_hit_goal().contains("p50 < 0.25 ms"));
    }
}
