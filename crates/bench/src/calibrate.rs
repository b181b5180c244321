//! The calibrated hit path: the app against `cache-demo-ref` (see [`crate::reference`]) in the same run, in
//! alternating slices. `/healthz` is measured against the static reference, cache hits against the Redis
//! reference, and each server's CPU time is read from `/proc` across its own slices, so a figure of the app is
//! a share of what the least possible handler reaches on the same machine at the same moment.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;
use indicatif::ProgressBar;

use crate::app::{Delta, SpawnedApp, process_cpu_seconds};
use crate::client::Target;
use crate::load::{self, LoadResult, LoadSpec};
use crate::report::{Calibration, RunStats};
use crate::scenario::Runner;
use crate::workload::{CacheMode, Distribution, Endpoint, KeySampler, SEEDED_PRODUCTS, Workload};

/// Slices per subject: each subject runs `duration / CALIBRATION_SLICES` at a time.
pub const CALIBRATION_SLICES: u32 = 8;

/// The order of the subjects in slice `slice` (0-based): forwards in even slices, backwards in odd ones
/// (A B C D, D C B A, ...), so each subject runs as often early as late and next to each of the others.
pub fn slice_order(slice: u32, subjects: usize) -> Vec<usize> {
    if slice.is_multiple_of(2) { (0..subjects).collect() } else { (0..subjects).rev().collect() }
}

/// One server and what is sent to it.
pub struct Subject {
    pub label: String,
    pub target: Target,
    /// Its process, for the CPU time.
    pub pid: Option<u32>,
    pub workload: Workload,
}

/// Runs every subject for `duration` in all, in `slices` slices taken in turns, and sums each one's slices.
pub async fn alternate(
    subjects: &[Subject],
    concurrency: usize,
    duration: Duration,
    slices: u32,
    timeout: Duration,
) -> anyhow::Result<Vec<RunStats>> {
    let slices = slices.max(1);
    let each = duration / slices;
    let mut sums: Vec<Option<(LoadResult, Delta)>> = subjects.iter().map(|_| None).collect();
    for s in 0..slices {
        for i in slice_order(s, subjects.len()) {
            let subject = &subjects[i];
            let spec = LoadSpec {
                workload: subject.workload.clone(),
                concurrency,
                duration: each,
                max_requests: None,
                timeout,
            };
            let before = subject.pid.and_then(process_cpu_seconds);
            let result = load::run(&subject.target, &spec, &ProgressBar::hidden()).await?;
            let after = subject.pid.and_then(process_cpu_seconds);
            let delta = Delta { cpu_seconds: before.zip(after).map(|(b, a)| a - b), ..Delta::default() };
            sums[i] = Some(match sums[i].take() {
                Some((mut sum, d)) => {
                    sum.append(result);
                    (sum, d.plus(delta))
                }
                None => (result, delta),
            });
        }
    }
    Ok(subjects
        .iter()
        .zip(sums)
        .filter_map(|(subject, sum)| {
            let (r, d) = sum?;
            let w = &subject.workload;
            let stats = RunStats::new(w.endpoint, w.cache, concurrency, 0.0, &r, &d);
            eprintln!("  {:<36} {}", subject.label, crate::scenario::one_line(&stats));
            Some(stats)
        })
        .collect())
}

/// The two reference servers, started by the bench.
pub struct References {
    pub fixed: SpawnedApp,
    pub redis: SpawnedApp,
}

impl References {
    /// Starts `cache-demo-ref static` and `cache-demo-ref redis --key-prefix PREFIX` (REDIS_URL from the
    /// environment) and waits until both answer.
    pub async fn start(binary: &Path, key_prefix: &str, log: &Path) -> anyhow::Result<References> {
        let fixed = SpawnedApp::start_with_args(binary, &["static"], &[], log)?;
        let redis = SpawnedApp::start_with_args(binary, &["redis", "--key-prefix", key_prefix], &[], log)?;
        let refs = References { fixed, redis };
        for r in [&refs.fixed, &refs.redis] {
            wait_up(&Target::local(r.addr), Duration::from_secs(10))
                .await
                .with_context(|| format!("{} did not start; see {}", binary.display(), log.display()))?;
        }
        Ok(refs)
    }

    pub async fn stop(self) {
        self.fixed.stop().await;
        self.redis.stop().await;
    }
}

/// Waits until `GET /healthz` answers 200.
async fn wait_up(target: &Target, within: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    let path = target.path("/healthz");
    while Instant::now() < until {
        if let Ok(r) = target.request(Method::GET, &path, None, Duration::from_secs(1)).await
            && r.is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{} not up within {within:?}", target.url)
}

fn workload(endpoint: Endpoint, runner: &Runner, distribution: Distribution) -> anyhow::Result<Workload> {
    let p = &runner.plan;
    let keys = endpoint.key_count(p.keys.min(SEEDED_PRODUCTS));
    Ok(Workload {
        endpoint,
        cache: if endpoint.cacheable() { CacheMode::On } else { CacheMode::Off },
        sampler: KeySampler::new(distribution, keys, p.zipf_exponent)?,
        write_sampler: KeySampler::new(distribution, keys, p.zipf_exponent)?,
        write_ratio: 0.0,
    })
}

/// `/healthz` against the static reference and cache hits against the Redis reference, the four in turns at
/// the plan's connections. Every product is first read once through the app, so Redis holds the entry of
/// each id the load draws; the Redis reference reads those entries.
pub async fn calibrate(runner: &Runner, refs: &References) -> anyhow::Result<Calibration> {
    let p = &runner.plan;
    let products = p.keys.min(SEEDED_PRODUCTS);
    let fill = LoadSpec {
        workload: workload(Endpoint::Product, runner, Distribution::Sequential)?,
        concurrency: p.concurrency.min(8),
        duration: Duration::from_secs(30),
        max_requests: Some(products),
        timeout: p.timeout,
    };
    load::run(&runner.app.target, &fill, &ProgressBar::hidden()).await?;
    let redis_target = Target::local(refs.redis.addr);
    let first = redis_target.request(Method::GET, &redis_target.path("/api/products/1"), None, p.timeout).await?;
    if !first.is_success() {
        bail!("the Redis reference answered HTTP {} for product 1: it does not find the app's entry", first.status);
    }
    let hits = workload(Endpoint::Product, runner, p.distribution)?;
    let health = workload(Endpoint::Healthz, runner, p.distribution)?;
    let subjects = [
        Subject {
            label: "GET /healthz, app".into(),
            target: runner.app.target.clone(),
            pid: runner.app.pid,
            workload: health.clone(),
        },
        Subject {
            label: "GET /healthz, static reference".into(),
            target: Target::local(refs.fixed.addr),
            pid: refs.fixed.pid(),
            workload: health,
        },
        Subject {
            label: "product hits, app".into(),
            target: runner.app.target.clone(),
            pid: runner.app.pid,
            workload: hits.clone(),
        },
        Subject {
            label: "product hits, Redis reference".into(),
            target: redis_target,
            pid: refs.redis.pid(),
            workload: hits,
        },
    ];
    let mut runs = alternate(&subjects, p.concurrency, p.duration, CALIBRATION_SLICES, p.timeout).await?.into_iter();
    match (runs.next(), runs.next(), runs.next(), runs.next()) {
        (Some(healthz), Some(static_ref), Some(hits), Some(redis_ref)) => {
            Ok(Calibration { slices: CALIBRATION_SLICES, healthz, static_ref, hits, redis_ref })
        }
        _ => bail!("the calibrated run returned no figures"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_alternate_their_order() {
        assert_eq!(slice_order(0, 4), [0, 1, 2, 3]);
        assert_eq!(slice_order(1, 4), [3, 2, 1, 0]);
        assert_eq!(slice_order(2, 2), [0, 1]);
        assert_eq!(slice_order(7, 2), [1, 0]);
        assert!(slice_order(3, 0).is_empty());
    }

    #[test]
    fn over_an_even_number_of_slices_each_subject_sits_at_every_position_equally() {
        let n = 4;
        let mut positions = vec![vec![0; n]; n];
        for s in 0..CALIBRATION_SLICES {
            for (pos, subject) in slice_order(s, n).into_iter().enumerate() {
                positions[subject][pos] += 1;
            }
        }
        // A and D take first and last place four times each; B and C the middle places.
        let mean: Vec<f64> =
            positions.iter().map(|p| p.iter().enumerate().map(|(i, c)| (i * c) as f64).sum::<f64>() / 8.0).collect();
        assert!(mean.iter().all(|m| (m - 1.5).abs() < 1e-9), "{positions:?}");
    }
}
