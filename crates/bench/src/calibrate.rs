//! The calibrated hit path: the app against `cache-demo-ref` (see [`crate::reference`]) in the same run, in
//! alternating slices. `/healthz` is measured against the static reference, cache hits against the Redis
//! and lookup references, and each server's CPU time is read from `/proc` across its own slices, so a figure of the app is
//! a share of what the least possible handler reaches on the same machine at the same moment.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;
use indicatif::ProgressBar;

use crate::app::{ContextSwitches, Delta, SpawnedApp, process_cpu_seconds};
use crate::client::Target;
use crate::load::{self, LoadResult, LoadSpec};
use crate::report::{Calibration, RunStats};
use crate::scenario::Runner;
use crate::workload::{CacheMode, Distribution, Endpoint, KeySampler, SEEDED_PRODUCTS, Workload};

/// Slices per subject in one round, each [`slice_length`] long: a round of the five calibrated runs lasts 40 s
/// in the standard scenario, so the entries read before it (the app's TTL, 60 s by default, less its jitter)
/// outlast it.
pub const SLICES_PER_ROUND: u32 = 32;

/// Rounds of the runs measured in turns. Before each round the app's entries are read again
/// ([`Runner::prime`]), so no round reads an entry near its expiry.
///
/// On the shared 2-core machine of docs/benchmarks.md, speed moves by ±10% from one slice to the next, and one
/// slice's move tells nothing of the next's (the shares of neighbouring pairs of slices are not correlated), so
/// a share's noise falls with the square root of the time measured. With one round of 32 slices the standard
/// error of a share, from its slices, was 1.5–2.4 points, and a share a few points above the bar fell below it
/// in some runs; with three rounds it was 1.0–1.6.
pub const ROUNDS: u32 = 3;

/// Slices per subject in all.
pub const CALIBRATION_SLICES: u32 = ROUNDS * SLICES_PER_ROUND;

/// One slice of a run measured in turns: a sixteenth of a plain run (0.25 s in the standard scenario).
pub fn slice_length(run: Duration) -> Duration {
    run / (SLICES_PER_ROUND / 2)
}

/// How runs measured in turns are cut: `rounds` rounds of `slices` slices per subject, each `each` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rounds {
    pub rounds: u32,
    pub slices: u32,
    pub each: Duration,
}

impl Rounds {
    /// [`ROUNDS`] rounds of [`SLICES_PER_ROUND`] slices of [`slice_length`] for plain runs of `run`.
    pub fn standard(run: Duration) -> Rounds {
        Rounds { rounds: ROUNDS, slices: SLICES_PER_ROUND, each: slice_length(run) }
    }

    /// Slices per subject in all.
    pub fn total_slices(&self) -> u32 {
        self.rounds * self.slices
    }
}

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

/// What one subject's slices measured, summed, and each slice's requests/s in the order they ran.
pub struct Turns {
    pub result: LoadResult,
    pub delta: Delta,
    pub slice_requests_per_s: Vec<f64>,
}

/// Runs `subjects` subjects in `rounds` rounds of `slices` slices each, taken in turns ([`slice_order`], the
/// slices numbered across rounds): `before_round()` runs before each round, and `slice(i, s)` runs slice `s`
/// (0-based) of subject `i` and returns what it measured. Each subject's slices are summed; `None` for a subject
/// that ran no slice (none, when `rounds`, `slices` and `subjects` are not zero).
pub async fn in_turns(
    subjects: usize,
    rounds: u32,
    slices: u32,
    mut before_round: impl AsyncFnMut() -> anyhow::Result<()>,
    mut slice: impl AsyncFnMut(usize, u32) -> anyhow::Result<(LoadResult, Delta)>,
) -> anyhow::Result<Vec<Option<Turns>>> {
    let mut turns: Vec<Option<Turns>> = (0..subjects).map(|_| None).collect();
    for s in 0..rounds * slices {
        if s % slices == 0 {
            before_round().await?;
        }
        for i in slice_order(s, subjects) {
            let (result, delta) = slice(i, s).await?;
            let secs = result.elapsed.as_secs_f64();
            let rate = if secs > 0.0 { result.answered() as f64 / secs } else { 0.0 };
            turns[i] = Some(match turns[i].take() {
                Some(mut t) => {
                    t.result.append(result);
                    t.delta = t.delta.plus(delta);
                    t.slice_requests_per_s.push(rate);
                    t
                }
                None => Turns { result, delta, slice_requests_per_s: vec![rate] },
            });
        }
    }
    Ok(turns)
}

/// Runs every subject in `rounds`, taken in turns, with `before_round()` before each round, and sums each one's
/// slices, keeping each slice's requests/s. With `redis_pid`, Redis's CPU time is read across each slice too.
pub async fn alternate(
    subjects: &[Subject],
    concurrency: usize,
    rounds: Rounds,
    timeout: Duration,
    redis_pid: Option<u32>,
    before_round: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<RunStats>> {
    let Rounds { rounds, slices, each } = rounds;
    let turns = in_turns(subjects.len(), rounds, slices.max(1), before_round, async |i, _| {
        let subject = &subjects[i];
        let spec = LoadSpec {
            workload: subject.workload.clone(),
            concurrency,
            duration: each,
            max_requests: None,
            timeout,
            server_timing: false,
        };
        let before = subject.pid.and_then(process_cpu_seconds);
        let switches_before = subject.pid.and_then(ContextSwitches::of);
        let redis_before = redis_pid.and_then(process_cpu_seconds);
        let load_before = process_cpu_seconds(std::process::id());
        let result = load::run(&subject.target, &spec, &ProgressBar::hidden()).await?;
        let load_after = process_cpu_seconds(std::process::id());
        let after = subject.pid.and_then(process_cpu_seconds);
        let switches_after = subject.pid.and_then(ContextSwitches::of);
        let redis_after = redis_pid.and_then(process_cpu_seconds);
        let delta = Delta {
            cpu_seconds: before.zip(after).map(|(b, a)| a - b),
            switches: switches_before.zip(switches_after).map(|(b, a)| a.since(b)),
            load_cpu_seconds: load_before.zip(load_after).map(|(b, a)| a - b),
            redis_cpu_seconds: redis_before.zip(redis_after).map(|(b, a)| a - b),
            ..Delta::default()
        };
        Ok((result, delta))
    })
    .await?;
    Ok(subjects
        .iter()
        .zip(turns)
        .filter_map(|(subject, turns)| {
            let t = turns?;
            let w = &subject.workload;
            let mut stats = RunStats::new(w.endpoint, w.cache, concurrency, 0.0, &t.result, &t.delta);
            stats.slice_requests_per_s = t.slice_requests_per_s;
            let redis =
                stats.redis_cpu_us_per_request.map(|c| format!("  Redis CPU {c:.1} µs/req")).unwrap_or_default();
            eprintln!("  {:<36} {}{redis}", subject.label, crate::scenario::one_line(&stats));
            Some(stats)
        })
        .collect())
}

/// `process_id` of `INFO server`.
pub fn redis_process_id(info: &str) -> Option<u32> {
    info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|v| v.trim().parse().ok())
}

/// The process id of the Redis at `REDIS_URL`, when it runs on this machine (its `/proc` entry exists):
/// its CPU time is then read across the slices too.
pub async fn local_redis_pid() -> Option<u32> {
    let url = std::env::var("REDIS_URL").ok()?;
    let client = redis::Client::open(url.as_str()).ok()?;
    let info = tokio::time::timeout(Duration::from_secs(2), async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("INFO").arg("server").query_async::<String>(&mut conn).await.ok()
    })
    .await
    .ok()??;
    redis_process_id(&info).filter(|pid| process_cpu_seconds(*pid).is_some())
}

/// The three reference servers, started by the bench.
pub struct References {
    pub fixed: SpawnedApp,
    pub redis: SpawnedApp,
    pub lookup: SpawnedApp,
}

impl References {
    /// Starts `cache-demo-ref static`, `cache-demo-ref redis --key-prefix PREFIX` and `cache-demo-ref lookup
    /// --key-prefix PREFIX` and waits until all three answer. They read the Redis at `redis_url`, else at
    /// REDIS_URL from the environment (passed in the environment, never in arguments: it may hold a password).
    pub async fn start(
        binary: &Path,
        key_prefix: &str,
        redis_url: Option<&str>,
        log: &Path,
    ) -> anyhow::Result<References> {
        let env: Vec<(&str, &str)> = redis_url.map(|url| ("REDIS_URL", url)).into_iter().collect();
        let fixed = SpawnedApp::start_with_args(binary, &["static"], &[], log)?;
        let redis = SpawnedApp::start_with_args(binary, &["redis", "--key-prefix", key_prefix], &env, log)?;
        let lookup = SpawnedApp::start_with_args(binary, &["lookup", "--key-prefix", key_prefix], &env, log)?;
        let refs = References { fixed, redis, lookup };
        for r in [&refs.fixed, &refs.redis, &refs.lookup] {
            wait_up(&Target::local(r.addr), Duration::from_secs(10))
                .await
                .with_context(|| format!("{} did not start; see {}", binary.display(), log.display()))?;
        }
        Ok(refs)
    }

    pub async fn stop(self) {
        self.fixed.stop().await;
        self.redis.stop().await;
        self.lookup.stop().await;
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

/// `/healthz` against the static reference and cache hits against the Redis and lookup references, the five in
/// turns at the plan's connections, in [`ROUNDS`] rounds. Before each round every product is read once through
/// the app after a flush ([`Runner::prime`]), so Redis holds a fresh entry of each id the load draws, which
/// outlasts the round; the references read those entries.
pub async fn calibrate(runner: &Runner, refs: &References) -> anyhow::Result<Calibration> {
    let p = &runner.plan;
    let redis_target = Target::local(refs.redis.addr);
    let lookup_target = Target::local(refs.lookup.addr);
    let prime = async || {
        runner.prime().await?;
        for (name, target) in [("Redis", &redis_target), ("lookup", &lookup_target)] {
            let first = target.request(Method::GET, &target.path("/api/products/1"), None, p.timeout).await?;
            if !first.is_success() {
                bail!(
                    "the {name} reference answered HTTP {} for product 1: it does not find the app's entry",
                    first.status
                );
            }
        }
        Ok(())
    };
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
            target: redis_target.clone(),
            pid: refs.redis.pid(),
            workload: hits.clone(),
        },
        Subject {
            label: "product hits, lookup reference".into(),
            target: lookup_target.clone(),
            pid: refs.lookup.pid(),
            workload: hits,
        },
    ];
    let redis_pid = local_redis_pid().await;
    let rounds = Rounds::standard(p.duration);
    let mut runs = alternate(&subjects, p.concurrency, rounds, p.timeout, redis_pid, prime).await?.into_iter();
    match (runs.next(), runs.next(), runs.next(), runs.next(), runs.next()) {
        (Some(healthz), Some(static_ref), Some(hits), Some(redis_ref), Some(lookup_ref)) => Ok(Calibration {
            slices: rounds.total_slices(),
            rounds: rounds.rounds,
            healthz,
            static_ref,
            hits,
            redis_ref,
            lookup_ref,
        }),
        _ => bail!("the calibrated run returned no figures"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cpu_comes_from_its_process() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\nprocess_supervised:no\r\n";
        assert_eq!(redis_process_id(info), Some(4242));
        assert_eq!(redis_process_id("# Server\r\n"), None);
    }

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
        // A and D take first and last place equally often; B and C the middle places: on average, each sits in
        // the middle.
        let slices = f64::from(CALIBRATION_SLICES);
        let mean: Vec<f64> =
            positions.iter().map(|p| p.iter().enumerate().map(|(i, c)| (i * c) as f64).sum::<f64>() / slices).collect();
        assert!(mean.iter().all(|m| (m - 1.5).abs() < 1e-9), "{positions:?}");
    }
}
