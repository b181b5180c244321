//! The command line: options, and the run they describe (against a URL, or against apps the bench starts).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_demo_api::Stats;
use clap::{Parser, ValueEnum};

use crate::app::{L1State, SpawnedApp};
use crate::calibrate::References;
use crate::client::Target;
use crate::report::{
    AppRun, Calibration, Comparison, Environment, MissPath, Report, RunStats, Settings, evaluate_bar, fmt_share,
    utc_date,
};
use crate::scenario::{self, Plan, Runner};
use crate::workload::{Distribution, Endpoint};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cache-demo-bench",
    version,
    about = "Load generator for cache-demo: database vs cache per endpoint, hit ratio, database load",
    after_help = "Examples:\n  \
        cache-demo-bench --url http://127.0.0.1:8000 --endpoint categories,product\n  \
        cache-demo-bench --scenario standard --markdown-out docs/benchmarks.md\n  \
        cache-demo-bench --endpoint product --cache on --write-ratio 0.05 --distribution uniform\n\n\
        Against a cluster: kubectl port-forward svc/cache-demo-app 8000:8000 -n redis-demo, then\n  \
        cache-demo-bench --url http://127.0.0.1:8000\n\n\
        Writes (--write-ratio, and the standard scenario) change the `stock` of seeded products."
)]
pub struct Args {
    /// Base URL of a running app (plain HTTP).
    #[arg(long, env = "CACHE_DEMO_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,

    /// Start this cache-demo binary instead of using --url: on a free loopback port, with DATABASE_URL and
    /// REDIS_URL from the environment. The standard scenario runs it twice: L1_ENABLED=false, then true.
    #[arg(long, value_name = "BINARY")]
    pub spawn_app: Option<PathBuf>,

    /// `cache-demo-ref`: the standard scenario also starts its static and Redis reference servers and measures
    /// the app's `/healthz` and cache hits against them, in turns.
    #[arg(long, value_name = "BINARY", requires = "spawn_app")]
    pub reference: Option<PathBuf>,

    /// Where the spawned app logs (JSON, warnings and errors); appended to.
    #[arg(long, value_name = "FILE", requires = "spawn_app")]
    pub app_log: Option<PathBuf>,

    /// `standard`: the fixed scenario of `make bench` (about four minutes); `custom`: the endpoints
    /// and options given.
    #[arg(long, value_enum, default_value_t = Scenario::Custom)]
    pub scenario: Scenario,

    /// Endpoints to measure (comma-separated), `custom` scenario.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Endpoint::Product])]
    pub endpoint: Vec<Endpoint>,

    /// Which paths to measure, `custom` scenario: `cache=off`, through the cache, or both.
    #[arg(long, value_enum, default_value_t = CacheChoice::Both)]
    pub cache: CacheChoice,

    /// Connections, one worker each.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Length of each measured run (`10s`, `500ms`, `1m`); default 10s, or 4s per run in `standard`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Also stop each run after this many requests.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Unmeasured requests before each cached run; default 2s, or 1s in `standard`.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// How keys (product ids; search terms) are drawn.
    #[arg(long, value_enum, default_value_t = Distribution::Zipf)]
    pub distribution: Distribution,

    /// Skew of the Zipf distribution (0 = uniform; 1 = classic).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,

    /// Product ids 1..=N to read (the seed has 500; more ids give 404s, counted as errors).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,

    /// Share of requests that are writes, 0 to 1 (`PUT /api/products/{id}` with `{"stock": n}`), `custom`.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    pub write_ratio: f64,

    /// Upper bound of one request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Threads of the load generator (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,

    /// The app's `ADMIN_TOKEN`, if it has one (the flush between runs needs it).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Print JSON instead of Markdown.
    #[arg(long)]
    pub json: bool,

    /// Also write the Markdown to FILE, between `<!-- bench:begin -->` and `<!-- bench:end -->` (the rest of
    /// an existing file is kept).
    #[arg(long, value_name = "FILE")]
    pub markdown_out: Option<PathBuf>,

    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Standard,
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheChoice {
    Both,
    On,
    Off,
}

/// `250ms`, `4s`, `1m`, or plain seconds (`2.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("not a duration: {s:?} (use e.g. 500ms, 10s, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use ms, s or m)")),
    };
    if !(secs.is_finite() && (0.0..=3600.0).contains(&secs)) {
        return Err(format!("{s:?} is out of range (0 to 1 hour)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A share from 0 to 1; `5%` is accepted too.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("not a ratio: {s:?}"))?;
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("{s:?} is not between 0 and 1")) }
}

impl Args {
    /// The shared options of every run, with the scenario's defaults filled in.
    pub fn plan(&self) -> Plan {
        let standard = self.scenario == Scenario::Standard;
        let default_duration = if standard { Duration::from_secs(4) } else { Duration::from_secs(10) };
        let default_warmup = if standard { Duration::from_secs(1) } else { Duration::from_secs(2) };
        Plan {
            concurrency: usize::from(self.concurrency),
            duration: self.duration.unwrap_or(default_duration),
            warmup: self.warmup.unwrap_or(default_warmup),
            max_requests: self.requests,
            timeout: self.timeout,
            distribution: self.distribution,
            zipf_exponent: self.zipf_exponent,
            keys: self.keys,
            write_ratio: if standard { 0.0 } else { self.write_ratio },
            progress: !self.no_progress && !self.json,
            verbose: true,
            admin_token: self.admin_token.clone(),
        }
    }
}

/// What the measurements of one app produced, before the report is assembled.
#[derive(Default)]
struct Measured {
    endpoints: Vec<Comparison>,
    miss_path: Option<MissPath>,
    write_mix: Vec<RunStats>,
    apps: Vec<AppRun>,
    calibration: Option<Calibration>,
    /// `/api/stats` at the end; `None` when not read.
    stats: Option<Stats>,
}

/// Runs what `args` describe and returns the report.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let plan = args.plan();
    let mut notes = Vec::new();
    let bench_build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let (measured, target_desc, app_desc, build, commit) = match &args.spawn_app {
        Some(binary) => {
            let log = args.app_log.clone().unwrap_or_else(|| std::env::temp_dir().join("cache-demo-bench-app.log"));
            eprintln!("cache-demo-bench: starting {} (log: {})", binary.display(), log.display());
            let standard = args.scenario == Scenario::Standard;
            // The standard scenario compares L1 off and on; a custom run keeps the environment's setting.
            let mut m = on_spawned_app(args, &plan, binary, &log, standard.then_some("false")).await?;
            if standard {
                let second = on_spawned_app(args, &plan, binary, &log, Some("true")).await?;
                if let Some(run) = second.apps.into_iter().next() {
                    match run.l1 {
                        L1State::Absent => notes.push(
                            "This build of the app has no L1 cache (`/api/stats` has no `l1` section): the run with \
                             `L1_ENABLED=true` measured Redis only again."
                                .to_owned(),
                        ),
                        L1State::Off => notes.push(
                            "With `L1_ENABLED=true` the app reported its L1 off or inactive (`/api/stats` `l1`): \
                             that run measured Redis only."
                                .to_owned(),
                        ),
                        L1State::On => {}
                    }
                    m.apps.push(run);
                }
            }
            let desc = format!("{} (`{}`)", app_version(binary), binary.display());
            let build = format!("app {}, bench {bench_build}", build_profile(binary));
            let target = "the app started by the bench on 127.0.0.1; PostgreSQL and Redis on this machine";
            (m, target.to_owned(), desc, build, commit_of(binary))
        }
        None => {
            let target = Target::resolve(&args.url).await?;
            let runner = Runner::new(target, plan.clone());
            runner.app.wait_ready(Duration::from_secs(10)).await?;
            let l1 = runner.l1_state().await?;
            let name = match l1 {
                L1State::On => "as deployed, L1 on",
                L1State::Off => "as deployed, L1 off",
                L1State::Absent => "as deployed, no L1",
            };
            let m = measure(args, &runner, name, None).await?;
            let build = format!("app as deployed, bench {bench_build}");
            (m, args.url.clone(), "as deployed at the URL".to_owned(), build, None)
        }
    };

    let stats = measured.stats.as_ref();
    let db_delay_ms = stats.map(|s| s.db_delay_ms);
    if let Some(d) = db_delay_ms.filter(|d| *d > 0) {
        notes.push(format!("`DB_DELAY_MS={d}`: every database query was slowed down on purpose."));
    }
    let runs = measured
        .endpoints
        .iter()
        .flat_map(|c| [&c.database, &c.cache])
        .flatten()
        .chain(&measured.write_mix)
        .chain(measured.apps.iter().flat_map(|a| [&a.ceiling, &a.product_hit]).flatten());
    for r in runs {
        if let Some(e) = &r.first_error {
            notes.push(format!("`{}`: {} errors; the first: {e}", r.endpoint.route(), r.errors));
        }
    }
    let cached_runs = measured.endpoints.iter().filter_map(|c| c.cache.as_ref()).chain(&measured.write_mix);
    for r in cached_runs {
        if let Some(n) = r.evicted_keys.filter(|n| *n > 0) {
            let share =
                if r.write_ratio > 0.0 { format!(" ({} writes)", fmt_share(r.write_ratio)) } else { String::new() };
            notes.push(format!(
                "Redis evicted {n} keys during the cached `{}` run{share}: maxmemory reached.",
                r.endpoint.route()
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));

    let standard = args.scenario == Scenario::Standard;
    if standard && measured.calibration.is_none() {
        notes.push(
            "No reference servers in this run (`--reference`): the goals measured against them are not measured."
                .to_owned(),
        );
    }
    let bar = if standard {
        evaluate_bar(&measured.apps, measured.miss_path.as_ref(), measured.calibration.as_ref())
    } else {
        Vec::new()
    };
    let settings = Settings {
        scenario: if standard { "standard" } else { "custom" }.to_owned(),
        concurrency: plan.concurrency,
        duration_s: plan.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        max_requests: plan.max_requests,
        distribution: match plan.distribution {
            Distribution::Zipf => format!("Zipf (s = {})", plan.zipf_exponent),
            Distribution::Uniform => "uniform".to_owned(),
            Distribution::Sequential => "in order".to_owned(),
        },
        keys: plan.keys,
        write_ratio: plan.write_ratio,
        db_delay_ms,
        patterns: stats.and_then(crate::app::patterns),
        redis_maxmemory: stats.and_then(|s| {
            let info = &s.redis.info;
            let policy = info.maxmemory_policy.as_deref().unwrap_or("?");
            info.maxmemory_human.as_ref().map(|m| format!("{m} ({policy})"))
        }),
    };
    Ok(Report {
        environment: Environment::gather(target_desc, app_desc, build, commit),
        settings,
        endpoints: measured.endpoints,
        miss_path: measured.miss_path,
        write_mix: measured.write_mix,
        apps: measured.apps,
        calibration: measured.calibration,
        bar,
        notes,
    })
}

/// Starts the app (with `L1_ENABLED=l1` when given), measures, and stops it whatever happened.
async fn on_spawned_app(
    args: &Args,
    plan: &Plan,
    binary: &Path,
    log: &Path,
    l1: Option<&str>,
) -> anyhow::Result<Measured> {
    let env: Vec<(&str, &str)> = l1.map(|v| ("L1_ENABLED", v)).into_iter().collect();
    let mut app = SpawnedApp::start(binary, &env, log)?;
    let mut runner = Runner::new(Target::local(app.addr), plan.clone());
    runner.app.pid = app.pid();
    let name = match l1 {
        Some(v) => format!("`L1_ENABLED={v}`"),
        None => "the app".to_owned(),
    };
    let result = async {
        if let Err(e) = runner.app.wait_ready(Duration::from_secs(30)).await {
            let exited = app.exited().map(|s| format!(" (it exited: {s})")).unwrap_or_default();
            return Err(e.context(format!("the app did not become ready{exited}; see {}", log.display())));
        }
        eprintln!("cache-demo-bench: {name} ready on {}", app.addr);
        if l1 == Some("true") {
            let run = scenario::hit_path_only(&runner, &name).await?;
            return Ok(Measured { apps: vec![run], stats: Some(runner.app.stats().await?), ..Measured::default() });
        }
        let reference = args.reference.as_deref().filter(|_| args.scenario == Scenario::Standard);
        let Some(reference) = reference else { return measure(args, &runner, &name, None).await };
        let prefix = runner.app.stats().await?.key_prefix;
        let refs = References::start(reference, &prefix, None, log).await?;
        eprintln!(
            "cache-demo-bench: reference servers on {} (static), {} (Redis) and {} (lookup)",
            refs.fixed.addr, refs.redis.addr, refs.lookup.addr
        );
        let measured = measure(args, &runner, &name, Some(&refs)).await;
        refs.stop().await;
        measured
    }
    .await;
    app.stop().await;
    result
}

/// The scenario of `args` on one app.
async fn measure(args: &Args, runner: &Runner, name: &str, refs: Option<&References>) -> anyhow::Result<Measured> {
    match args.scenario {
        Scenario::Standard => {
            let r = scenario::standard(runner, name, refs).await?;
            Ok(Measured {
                endpoints: r.endpoints,
                miss_path: Some(r.miss_path),
                write_mix: r.write_mix,
                apps: vec![r.app],
                calibration: r.calibration,
                stats: Some(runner.app.stats().await?),
            })
        }
        Scenario::Custom => {
            let (db, cache) = match args.cache {
                CacheChoice::Both => (true, true),
                CacheChoice::On => (false, true),
                CacheChoice::Off => (true, false),
            };
            let mut endpoints = Vec::new();
            for e in dedup(&args.endpoint) {
                if e == Endpoint::Healthz {
                    let ceiling = runner.ceiling().await?;
                    endpoints.push(Comparison::new(e, Some(ceiling), None));
                } else {
                    endpoints.push(runner.compare(e, db, cache).await?);
                }
            }
            Ok(Measured { endpoints, stats: Some(runner.app.stats().await?), ..Measured::default() })
        }
    }
}

fn dedup(endpoints: &[Endpoint]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for e in endpoints {
        if !out.contains(e) {
            out.push(*e);
        }
    }
    out
}

/// `cache-demo 0.1.0` from `BINARY --version`.
fn app_version(binary: &Path) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "cache-demo".to_owned())
}

impl Environment {
    /// The machine, the build and the source this run measured (`commit`: of the app's source, when known).
    pub fn gather(target: String, app: String, build: String, commit: Option<String>) -> Environment {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| cpu_model(&t))
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        Environment { date: utc_date(secs), cores, cpu, build, app, commit, target }
    }
}

/// `release` or `debug` from a binary's path under `target/`.
fn build_profile(binary: &Path) -> &'static str {
    let parts: Vec<_> = binary.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.iter().any(|p| p == "release") {
        "release"
    } else if parts.iter().any(|p| p == "debug") {
        "debug"
    } else {
        "build unknown"
    }
}

/// `model name` from `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    use procfs::FromRead;
    let info = procfs::CpuInfo::from_read(cpuinfo.as_bytes()).ok()?;
    info.model_name(0).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The working directory's commit ([`git_commit`]) when `binary` lies inside its repository (a build of it, such
/// as `target/release/cache-demo`); `None` for a binary from elsewhere, whose commit the bench cannot know.
fn commit_of(binary: &Path) -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--show-toplevel"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let top = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).canonicalize().ok()?;
    if binary.canonicalize().ok()?.starts_with(top) { git_commit() } else { None }
}

/// `git rev-parse --short HEAD` of the working directory, marked when there are uncommitted changes.
fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    Some(if dirty { format!("{commit} with uncommitted changes") } else { commit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_build_inside_the_repository_is_labelled_with_its_commit() {
        let outside = tempfile::NamedTempFile::new().expect("a file outside the repository");
        assert_eq!(commit_of(outside.path()), None, "a copied binary's commit is unknown");
        let inside = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert_eq!(commit_of(&inside), git_commit());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("4h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn ratios_parse_as_fractions_or_percentages() {
        assert_eq!(parse_ratio("0.01"), Ok(0.01));
        assert_eq!(parse_ratio("5%"), Ok(0.05));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
    }

    #[test]
    fn standard_scenario_defaults() {
        let args = Args::parse_from(["cache-demo-bench", "--scenario", "standard", "--write-ratio", "0.5"]);
        let plan = args.plan();
        assert_eq!(plan.concurrency, 32);
        assert_eq!(plan.duration, Duration::from_secs(4));
        assert_eq!(plan.warmup, Duration::from_secs(1));
        assert_eq!(plan.write_ratio, 0.0, "the standard scenario chooses its own write shares");
        let args = Args::parse_from(["cache-demo-bench", "--endpoint", "categories,search", "--duration", "3s"]);
        assert_eq!(args.endpoint, [Endpoint::Categories, Endpoint::Search]);
        assert_eq!(args.plan().duration, Duration::from_secs(3));
    }

    #[test]
    fn cpu_model_is_read_from_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor: 0\n"), None);
    }
}
