use super::*;

fn latency(p50: f64, p95: f64, p99: f64, max: f64) -> Option<Latency> {
    Some(Latency { count: 1000, mean_ms: p50, p50_ms: p50, p95_ms: p95, p99_ms: p99, max_ms: max })
}

fn run(endpoint: Endpoint, cache: CacheMode, rps: f64, p50: f64) -> RunStats {
    RunStats {
        endpoint,
        cache,
        concurrency: 32,
        write_ratio: 0.0,
        elapsed_s: 4.0,
        requests: (rps * 4.0) as u64,
        errors: 0,
        requests_per_s: rps,
        latency: latency(p50, p50 * 2.0, p50 * 3.0, p50 * 10.0),
        server: latency(p50 / 2.0, p50, p50, p50 * 5.0),
        server_redis: None,
        server_db: None,
        writes: None,
        x_cache: XCacheCounts::default(),
        hit_ratio: None,
        db_queries_per_s: None,
        evicted_keys: None,
        app_cpu_us_per_request: None,
        load_cpu_us_per_request: None,
        redis_cpu_us_per_request: None,
        switches_per_1k: None,
        slice_requests_per_s: Vec::new(),
        first_error: None,
    }
}

fn environment() -> Environment {
    Environment {
        date: "2026-11-23 10:00 UTC".into(),
        cores: 2,
        cpu: "AMD EPYC".into(),
        build: "app release, bench release".into(),
        app: "cache-demo 0.1.0".into(),
        commit: Some("abc1234".into()),
        target: "http://127.0.0.1:8000".into(),
    }
}

fn settings(scenario: &str) -> Settings {
    Settings {
        scenario: scenario.into(),
        concurrency: 32,
        duration_s: 4.0,
        warmup_s: 1.0,
        max_requests: None,
        distribution: "Zipf (s = 1)".into(),
        keys: 500,
        write_ratio: 0.0,
        db_delay_ms: None,
        patterns: Some("single_flight, ttl_jitter_pct=10".into()),
        redis_maxmemory: Some("64.00M (allkeys-lru)".into()),
    }
}

fn categories() -> Comparison {
    let mut db = run(Endpoint::Categories, CacheMode::Off, 850.0, 36.6);
    db.db_queries_per_s = Some(850.0);
    let mut cache = run(Endpoint::Categories, CacheMode::On, 17_337.4, 1.58);
    cache.db_queries_per_s = Some(0.0);
    cache.hit_ratio = Some(1.0);
    Comparison::new(Endpoint::Categories, Some(db), Some(cache))
}

fn custom_report() -> Report {
    Report {
        environment: environment(),
        settings: settings("custom"),
        endpoints: vec![categories()],
        miss_path: None,
        write_mix: Vec::new(),
        apps: Vec::new(),
        calibration: None,
        bar: Vec::new(),
        notes: Vec::new(),
    }
}

#[test]
fn speedups_are_computed_from_both_runs() {
    let s = categories().speedup;
    assert_eq!(s.p50.map(|v| (v * 1000.0).round() / 1000.0), Some(23.165));
    assert_eq!(s.throughput.map(|v| (v * 100.0).round() / 100.0), Some(20.4));
    assert_eq!(s.db_load_reduction_pct, Some(100.0));
}

#[test]
fn markdown_of_a_fixed_report_is_exact() {
    let expected = "\
| setting | value |
|---|---|
| date | 2026-11-23 10:00 UTC |
| cores (nproc) | 2 |
| CPU | AMD EPYC |
| build | app release, bench release |
| app | cache-demo 0.1.0, commit abc1234 |
| target | http://127.0.0.1:8000 |
| load (`custom`) | 32 connections, 4 s per run after 1 s of warm-up; keys: Zipf (s = 1) over 500 |
| cache patterns on | single_flight, ttl_jitter_pct=10 |
| Redis maxmemory | 64.00M (allkeys-lru) |

### Database vs cache, per endpoint

| endpoint | path | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors | DB queries/s | hit ratio |
|---|---|--:|--:|--:|--:|--:|--:|--:|--:|
| `GET /api/categories` | database (`cache=off`) | 850 | 36.6 | 73.2 | 110 | 366 | 0 | 850 | – |
|  | cache | 17,337 | 1.58 | 3.16 | 4.74 | 15.8 | 0 | 0 | 100.0% |

What the cache changed (cache vs database; above 1× is better with the cache):

| endpoint | throughput | p50 | p95 | p99 | database load reduction |
|---|--:|--:|--:|--:|--:|
| `GET /api/categories` | 20× | 23× | 23× | 23× | 100.0% |

### How to read this

- Requests/s and p50 … max are measured by the client, so they include the load generator, which runs on the same cores as the app, PostgreSQL and Redis. `/healthz`, a static response, is the most this machine serves with the load generator on it: no endpoint can beat it.
- Hit ratio: the app's own counters (`/api/stats` hits, misses, errors), as deltas over the measured run, after the warm-up. DB queries/s: `db_query_duration_seconds_count` in `/metrics`, summed over all queries, as deltas over the run.
- To watch the hit ratio fall as the key space outgrows Redis memory, set `maxmemory` below what the 500 products need (`redis-cli -p PORT CONFIG SET maxmemory 1500kb` on the local stack, where an idle Redis uses about 1 MB) and run `cache-demo-bench --endpoint product --cache on --distribution uniform`: evictions are listed under Notes.";
    assert_eq!(custom_report().to_markdown(), expected);
}

fn standard_apps(hit_rps: f64, hit_p99: f64, l1: L1State) -> Vec<AppRun> {
    let mut hit = run(Endpoint::Product, CacheMode::On, hit_rps, 1.0);
    hit.latency = latency(1.0, 2.0, hit_p99, 9.0);
    hit.app_cpu_us_per_request = Some(22.4);
    hit.server = latency(0.2, 0.4, 0.5, 2.0);
    let ceiling = run(Endpoint::Healthz, CacheMode::Off, 40_000.0, 0.5);
    // A lighter run: 80% of the throughput at 8 connections, with less time in the server.
    let mut light = hit.clone();
    light.concurrency = 8;
    light.requests_per_s = hit_rps * 0.8;
    light.server = latency(0.15, 0.3, 0.4, 1.0);
    light.server_redis = latency(0.14, 0.3, 0.4, 1.0);
    let mut apps = vec![AppRun {
        name: "`L1_ENABLED=false`".into(),
        l1: L1State::Absent,
        ceiling: Some(ceiling.clone()),
        product_hit: Some(hit.clone()),
        by_connections: vec![light],
        rss_bytes: Some(14_300_000.0),
    }];
    let mut l1_hit = hit;
    l1_hit.requests_per_s = 32_000.0;
    apps.push(AppRun {
        name: "`L1_ENABLED=true`".into(),
        l1,
        ceiling: Some(ceiling),
        product_hit: Some(l1_hit),
        by_connections: Vec::new(),
        rss_bytes: Some(52_000_000.0),
    });
    apps
}

fn miss_path(extra_ms: f64) -> MissPath {
    let mut db = run(Endpoint::Product, CacheMode::Off, 2000.0, 0.45);
    db.server = latency(0.35, 0.5, 0.6, 1.0);
    db.server_db = latency(0.34, 0.5, 0.6, 1.0);
    let mut miss = run(Endpoint::Product, CacheMode::On, 1500.0, 0.6);
    miss.server = latency(0.35 + extra_ms, 0.9, 1.0, 2.0);
    miss.server_redis = latency(0.1, 0.2, 0.3, 0.5);
    let mut hit = run(Endpoint::Product, CacheMode::On, 4000.0, 0.17);
    hit.server = latency(0.08, 0.12, 0.2, 0.5);
    hit.server_redis = latency(0.077, 0.1, 0.2, 0.5);
    MissPath::new(db, miss, hit)
}

#[test]
fn the_bar_is_measured_never_assumed() {
    let m = miss_path(0.25);
    assert!((m.extra_ms.expect("both server times") - 0.25).abs() < 1e-9);
    assert_eq!(m.round_trip_ms, Some(0.1));
    let bar = evaluate_bar(&standard_apps(21_000.0, 4.0, L1State::On), Some(&m), None);
    let statuses: Vec<Status> = bar.iter().map(|g| g.status).collect();
    use Status::*;
    // rps, p99, L1 vs ceiling (32k of 40k = 80%), server hit p50 one connection, under load, miss path, memory,
    // then the six goals against the reference servers.
    assert_eq!(
        statuses,
        [
            Met,
            Met,
            NotMet,
            Met,
            Met,
            NotMet,
            NotMet,
            NotMeasured,
            NotMeasured,
            NotMeasured,
            NotMeasured,
            NotMeasured,
            NotMeasured
        ]
    );
    assert_eq!(bar[2].measured, "32,000 of 40,000 requests/s = 80.0%");
    // The 8-connection run (16,800 requests/s) is below 20,000: the 32-connection run is the one judged.
    assert_eq!(bar[4].measured, "p50 0.200 ms at 32 connections (21,000 requests/s)");
    assert_eq!(bar[5].measured, "+0.250 ms = 2.5 round trips of 0.100 ms (the lookup)");
    assert_eq!(bar[6].measured, "`L1_ENABLED=false`: 14.3 MB; `L1_ENABLED=true`: 52.0 MB");

    let bar = evaluate_bar(&standard_apps(19_999.0, 5.0, L1State::Absent), Some(&miss_path(0.05)), None);
    let statuses: Vec<Status> = bar.iter().map(|g| g.status).collect();
    assert_eq!(statuses[..7], [NotMet, NotMet, NotMeasured, Met, NotMet, Met, NotMet]);
    assert_eq!(bar[2].measured, "no L1 in this build (Redis only: 50.0% of the ceiling)");
    assert_eq!(bar[4].measured, "no run reached 20,000 requests/s; p50 0.200 ms at 32 connections (19,999 requests/s)");

    let bar = evaluate_bar(&[], None, None);
    assert!(bar.iter().all(|g| g.status == NotMeasured), "{bar:?}");
}

#[test]
fn under_load_the_lightest_run_that_reaches_the_throughput_goal_is_judged() {
    // 30,000 at 32 connections; 24,000 at 8 connections with a server p50 of 0.15 ms.
    let apps = standard_apps(30_000.0, 4.0, L1State::On);
    let bar = evaluate_bar(&apps, None, None);
    assert_eq!(bar[4].status, Status::Met);
    assert_eq!(
        bar[4].measured,
        "p50 0.150 ms at 8 connections (24,000 requests/s); p50 0.200 ms at 32 connections (30,000 requests/s)"
    );
    // The same with a slow server at 8 connections fails, whatever the 32-connection run did.
    let mut slow = apps.clone();
    slow[0].by_connections[0].server = latency(0.31, 0.4, 0.5, 1.0);
    assert_eq!(evaluate_bar(&slow, None, None)[4].status, Status::NotMet);
}

#[test]
fn a_miss_is_judged_in_whole_round_trips() {
    let status = |extra: f64| evaluate_bar(&[], Some(&miss_path(extra)), None)[5].status;
    // One round trip (0.1 ms) plus some work in the app passes; a second round trip does not.
    assert_eq!(status(0.05), Status::Met);
    assert_eq!(status(0.14), Status::Met);
    assert_eq!(status(0.16), Status::NotMet);
    assert_eq!(status(0.2), Status::NotMet);
    assert_eq!(
        evaluate_bar(&[], Some(&miss_path(0.14)), None)[5].measured,
        "+0.140 ms = 1.4 round trips of 0.100 ms (the lookup)"
    );
}

fn calibration(hit_rps: f64, hit_p99: f64, hit_cpu: f64) -> Calibration {
    let mut healthz = run(Endpoint::Healthz, CacheMode::Off, 36_000.0, 0.8);
    healthz.app_cpu_us_per_request = Some(12.0);
    healthz.redis_cpu_us_per_request = Some(0.1);
    let mut static_ref = run(Endpoint::Healthz, CacheMode::Off, 40_000.0, 0.7);
    static_ref.app_cpu_us_per_request = Some(8.0);
    static_ref.redis_cpu_us_per_request = Some(0.1);
    let mut hits = run(Endpoint::Product, CacheMode::On, hit_rps, 1.0);
    hits.latency = latency(1.0, 2.0, hit_p99, 9.0);
    hits.app_cpu_us_per_request = Some(hit_cpu);
    hits.redis_cpu_us_per_request = Some(9.0);
    let mut redis_ref = run(Endpoint::Product, CacheMode::On, 25_000.0, 0.9);
    redis_ref.app_cpu_us_per_request = Some(20.0);
    redis_ref.redis_cpu_us_per_request = Some(6.0);
    let mut lookup_ref = run(Endpoint::Product, CacheMode::On, 24_000.0, 0.95);
    lookup_ref.app_cpu_us_per_request = Some(21.0);
    lookup_ref.redis_cpu_us_per_request = Some(8.5);
    Calibration { slices: 8, rounds: 2, healthz, static_ref, hits, redis_ref, lookup_ref }
}

#[test]
fn the_l1_share_is_also_given_slice_by_slice() {
    let mut apps = standard_apps(21_000.0, 4.0, L1State::On);
    let l1 = |apps: &[AppRun]| {
        evaluate_bar(apps, None, None).into_iter().find(|g| g.goal == BAR.l1_goal()).expect("goal").measured
    };
    assert_eq!(l1(&apps), "32,000 of 40,000 requests/s = 80.0%");
    let with_l1 = &mut apps[1];
    if let (Some(hit), Some(ceiling)) = (with_l1.product_hit.as_mut(), with_l1.ceiling.as_mut()) {
        hit.slice_requests_per_s = vec![30_000.0, 34_000.0];
        ceiling.slice_requests_per_s = vec![40_000.0, 40_000.0];
    }
    // Pairs of 75% and 85%: the share of their sums is 80%, and its standard error √((2,000² + 2,000²) / 2) /
    // 40,000 = 5 points.
    assert_eq!(
        l1(&apps),
        "32,000 of 40,000 requests/s = 80.0% (slice by slice: 75.0%–85.0%; standard error 5.0 points)"
    );
}

#[test]
fn shares_slice_by_slice_pair_each_slice_with_the_one_beside_it() {
    let mut app = run(Endpoint::Product, CacheMode::On, 20_000.0, 1.0);
    let mut reference = run(Endpoint::Product, CacheMode::On, 25_000.0, 0.9);
    assert_eq!(app.slice_share_range(&reference), None, "no slices");
    app.slice_requests_per_s = vec![18_000.0, 22_000.0, 21_000.0, 19_000.0];
    reference.slice_requests_per_s = vec![20_000.0, 25_000.0, 30_000.0, 0.0];
    // 90%, 88%, 70%; a slice that answered nothing has no share.
    assert_eq!(app.slice_share_range(&reference), Some((0.7, 0.9)));
    assert_eq!(markdown::fmt_share_range((0.7, 0.9)), "70.0%–90.0%");
}

#[test]
fn a_share_has_a_standard_error_from_its_pairs_of_slices() {
    let mut app = run(Endpoint::Product, CacheMode::On, 20_000.0, 1.0);
    let mut reference = run(Endpoint::Product, CacheMode::On, 25_000.0, 0.9);
    app.slice_requests_per_s = vec![18_000.0];
    reference.slice_requests_per_s = vec![20_000.0];
    assert_eq!(app.slice_share_error(&reference), None, "one pair tells nothing of the spread");
    // The same share in every pair: no error, however much the machine's speed moved.
    app.slice_requests_per_s = vec![18_000.0, 9_000.0, 27_000.0];
    reference.slice_requests_per_s = vec![20_000.0, 10_000.0, 30_000.0];
    assert!(app.slice_share_error(&reference).is_some_and(|e| e.abs() < 1e-12));
    // 18/20, 22/25, 21/30 and a slice that answered nothing: R = 61/75; residuals 1,733.3, 1,666.7 and
    // -3,400; √(17,342,222 / (3 · 2)) = 1,700.1, over the mean 25,000: 6.8 points.
    app.slice_requests_per_s = vec![18_000.0, 22_000.0, 21_000.0, 19_000.0];
    reference.slice_requests_per_s = vec![20_000.0, 25_000.0, 30_000.0, 0.0];
    let e = app.slice_share_error(&reference).expect("three pairs");
    assert!((e - 0.068_00).abs() < 1e-4, "{e}");
}

#[test]
fn the_app_is_judged_as_a_share_of_its_references() {
    use Status::*;
    let judged = |c: &Calibration| -> Vec<Goal> { evaluate_bar(&[], None, Some(c))[7..12].to_vec() };
    // /healthz 36k of 40k = 90%; hits 22.5k of 25k = 90% (of the lookup reference's 24k: 93.8%), p99 4.9 ms,
    // 24 µs against 20 µs = 1.2×: all met.
    let goals = judged(&calibration(22_500.0, 4.9, 24.0));
    assert_eq!(goals.iter().map(|g| g.status).collect::<Vec<_>>(), [Met, Met, Met, Met, Met]);
    assert_eq!(goals[0].measured, "36,000 of 40,000 requests/s = 90.0%");
    assert_eq!(
        goals[1].measured,
        "22,500 of 25,000 requests/s = 90.0%; the lookup reference itself reached 96.0% of it"
    );
    assert_eq!(goals[2].measured, "22,500 of 24,000 requests/s = 93.8%");
    assert_eq!(goals[3].measured, "p99 4.90 ms at 32 connections (the reference: 2.70 ms)");
    assert_eq!(goals[4].measured, "24.0 µs against 20.0 µs = 1.20×");
    // Just below each threshold.
    let goals = judged(&calibration(22_400.0, 5.0, 24.2));
    assert_eq!(
        goals[1].measured,
        "22,400 of 25,000 requests/s = 89.6%; the lookup reference itself reached 96.0% of it"
    );
    // A share that one decimal would round onto the limit shows a second.
    let goals_close = judged(&calibration(22_490.0, 4.9, 24.0));
    assert_eq!(
        (goals_close[1].measured.as_str(), goals_close[1].status),
        ("22,490 of 25,000 requests/s = 89.96%; the lookup reference itself reached 96.0% of it", NotMet)
    );
    assert_eq!(goals.iter().map(|g| g.status).collect::<Vec<_>>(), [Met, NotMet, Met, NotMet, NotMet]);
    assert_eq!(goals[4].measured, "24.2 µs against 20.0 µs = 1.21×");
    // A ratio that two decimals would round onto the limit shows a third.
    let goals = judged(&calibration(22_500.0, 4.9, 24.08));
    assert_eq!((goals[4].measured.as_str(), goals[4].status), ("24.1 µs against 20.0 µs = 1.204×", NotMet));
    let goals = judged(&calibration(22_500.0, 4.9, 23.92));
    assert_eq!((goals[4].measured.as_str(), goals[4].status), ("23.9 µs against 20.0 µs = 1.196×", Met));
    let goals = judged(&calibration(21_500.0, 4.0, 20.0));
    assert_eq!(goals[2].status, NotMet, "{:?}", goals[2]);
    // Without CPU times (servers not started by the bench) the CPU goal is not measured, never passed.
    let mut c = calibration(22_500.0, 4.9, 24.0);
    c.redis_ref.app_cpu_us_per_request = None;
    assert_eq!(judged(&c)[4].status, NotMeasured);
    assert_eq!(c.hit_cpu_ratio(), None);
    assert_eq!(c.healthz_cpu_ratio(), Some(1.5));
}

#[test]
fn healthz_is_judged_per_cpu_second_too() {
    let judged = |c: &Calibration| -> Goal { evaluate_bar(&[], None, Some(c))[12].clone() };
    let mut c = calibration(22_500.0, 4.9, 24.0);
    // 12 µs against 8 µs: 66.7% of the reference's requests per CPU second, although its requests/s share is 90%.
    let goal = judged(&c);
    assert!(goal.goal.starts_with("`/healthz` per CPU second of the server: ≥ 90%"), "{}", goal.goal);
    assert!(goal.goal.contains("≤ 1.11×"), "{}", goal.goal);
    assert_eq!(
        (goal.measured.as_str(), goal.status),
        ("12.0 µs against 8.0 µs per request = 66.7% of its requests per CPU second", Status::NotMet)
    );
    c.healthz.app_cpu_us_per_request = Some(8.8);
    assert_eq!(judged(&c).status, Status::Met, "{:?}", judged(&c));
    c.healthz.app_cpu_us_per_request = Some(8.9);
    assert_eq!(judged(&c).status, Status::NotMet, "{:?}", judged(&c));
    c.static_ref.app_cpu_us_per_request = None;
    assert_eq!(judged(&c).status, Status::NotMeasured);
    assert_eq!(evaluate_bar(&[], None, None)[12].status, Status::NotMeasured);
}

#[test]
fn the_calibration_renders_beside_the_references() {
    let mut c = calibration(18_000.0, 5.5, 30.0);
    c.hits.slice_requests_per_s = vec![17_000.0, 19_000.0];
    c.redis_ref.slice_requests_per_s = vec![25_000.0, 25_000.0];
    let bar = evaluate_bar(&[], None, Some(&c));
    let report = Report { calibration: Some(c), bar, ..custom_report() };
    let md = report.to_markdown();
    assert!(md.contains("### Hit path against the least a handler can do"), "{md}");
    assert!(md.contains("take turns in 8 slices each"), "{md}");
    assert!(md.contains("in 2 rounds: before\neach, after a flush"), "{md}");
    assert!(
        md.contains("| `GET /healthz`, static reference | 36,000 | 40,000 | 90.0% | – | 0.800 / 0.700 | 2.40 / 2.10 | 12.0 | 8.0 | 1.5× | – / – | 0 |"),
        "{md}"
    );
    assert!(
        md.contains(
            "| `GET /api/products/{id}` hits (L1 off), Redis reference | 18,000 | 25,000 | 72.0% | 68.0%–76.0% | 1.00 / 0.900 | 5.50 / 2.70 | 30.0 | 20.0 | 1.5× | 9.0 / 6.0 | 0 |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| `GET /api/products/{id}` hits (L1 off), lookup reference | 18,000 | 24,000 | 75.0% | – | 1.00 / 0.950 | 5.50 / 2.85 | 30.0 | 21.0 | 1.4× | 9.0 / 8.5 | 0 |"
        ),
        "{md}"
    );
    // The bar gives the same spread beside the share it judges, and judges no share of runs with errors.
    let mut c = calibration(18_000.0, 5.5, 30.0);
    c.redis_ref.errors = 15;
    let hits = evaluate_bar(&[], None, Some(&c)).into_iter().find(|g| g.goal == BAR.hit_ref_goal()).expect("goal");
    assert_eq!(hits.status, Status::NotMeasured);
    assert_eq!(hits.measured, "not judged: 0 errors from the app, 15 from the reference");
    // The bar gives the same spread beside the share it judges.
    assert!(
        md.contains("18,000 of 25,000 requests/s = 72.0% (slice by slice: 68.0%–76.0%; standard error 4.0 points)"),
        "{md}"
    );
}

#[test]
fn the_scheduler_table_shows_what_the_bench_read() {
    let mut c = calibration(18_000.0, 5.5, 30.0);
    // Without the load generator's CPU or any context switches there is nothing to show.
    let md = Report { calibration: Some(c.clone()), ..custom_report() }.to_markdown();
    assert!(!md.contains("load generator CPU µs/request"), "{md}");
    c.healthz.load_cpu_us_per_request = Some(7.46);
    c.healthz.switches_per_1k = Some(SwitchRates { waited: 1.7, preempted: 2.2 });
    c.static_ref.load_cpu_us_per_request = Some(7.9);
    let md = Report { calibration: Some(c), ..custom_report() }.to_markdown();
    assert!(md.contains("as the scheduler saw them"), "{md}");
    assert!(md.contains("| app, `GET /healthz` | 36,000 | 12.0 | 7.5 | 0.1 | 19.6 | 2 | 2 |"), "{md}");
    assert!(md.contains("| static reference, `GET /healthz` | 40,000 | 8.0 | 7.9 | 0.1 | 16.0 | – | – |"), "{md}");
    // Without the load generator's CPU there is no sum.
    assert!(md.contains("| Redis reference, the same hits | 25,000 | 20.0 | – | 6.0 | – | – | – |"), "{md}");
}

#[test]
fn the_bar_renders_as_a_table() {
    let report = Report {
        bar: evaluate_bar(&standard_apps(21_000.0, 4.0, L1State::Absent), Some(&miss_path(0.05)), None),
        ..custom_report()
    };
    let md = report.to_markdown();
    let expected = "\
### The bar

| goal | measured |  |
|---|---|---|
| Cache hits of `GET /api/products/{id}`, Redis only (L1 off): ≥ 20,000 requests/s | 21,000 requests/s at 32 connections | met |
| … and p99 < 5 ms | p99 4.00 ms | met |
| Cache hits with L1 on: ≥ 90% of the `/healthz` ceiling of the same run | no L1 in this build (Redis only: 52.5% of the ceiling) | not measured |
| Server-side time of a cache hit (`Server-Timing` total), p50 < 0.3 ms, one connection | p50 0.080 ms | met |
| … and under load: at the lightest load that reaches 20,000 requests/s (Redis only) | p50 0.200 ms at 32 connections (21,000 requests/s) | met |
| A miss adds at most one Redis round trip over `cache=off` (server-side p50) | +0.050 ms = 0.5 round trips of 0.100 ms (the lookup) | met |
| App resident memory < 50 MB after the standard scenario | `L1_ENABLED=false`: 14.3 MB; `L1_ENABLED=true`: 52.0 MB | **not met** |
| `/healthz`: ≥ 90% of the static reference's requests/s, in turns in the same run | no reference servers in this run | not measured |
";
    assert!(md.contains(expected), "{md}");
}

#[test]
fn the_full_standard_report_has_every_section() {
    let apps = standard_apps(21_000.0, 4.0, L1State::Absent);
    let mut mix = run(Endpoint::Product, CacheMode::On, 15_000.0, 1.5);
    mix.write_ratio = 0.01;
    mix.hit_ratio = Some(0.972);
    mix.writes = latency(6.25, 9.0, 12.0, 20.0);
    let product_db = run(Endpoint::Product, CacheMode::Off, 4000.0, 7.0);
    let product = Comparison::new(Endpoint::Product, Some(product_db), apps[0].product_hit.clone());
    let report = Report {
        settings: settings("standard"),
        endpoints: vec![product, categories()],
        miss_path: Some(miss_path(0.25)),
        write_mix: vec![apps[0].product_hit.clone().expect("hit run"), mix],
        bar: evaluate_bar(&apps, None, None),
        apps,
        notes: vec!["A note.".into()],
        ..custom_report()
    };
    let md = report.to_markdown();
    for heading in [
        "### Database vs cache, per endpoint",
        "### Miss path: each product id once, one connection",
        "### Writes and the hit ratio",
        "### Hit path against the HTTP ceiling, and memory",
        "### Cache hits by connections, `L1_ENABLED=false`",
        "### The bar",
        "### Notes",
        "### How to read this",
    ] {
        assert!(md.contains(heading), "{heading} missing from\n{md}");
    }
    assert!(md.contains("| 1% | 15,000 | 1.50 | 4.50 | 6.25 | 97.2% | – | 0 |"), "{md}");
    assert!(
        md.contains("| `L1_ENABLED=false` | 40,000 | 21,000 | 52.5% | – | 1.00 | 4.00 | 0.200 | – | 22.4 | 14.3 MB |"),
        "{md}"
    );
    assert!(!md.contains("no server time is shown"), "no L1 run here: {md}");
    let with_l1 = Report { apps: standard_apps(21_000.0, 4.0, L1State::On), ..custom_report() }.to_markdown();
    assert!(with_l1.contains("does not read the hits' `Server-Timing`"), "{with_l1}");
    assert!(md.contains("A miss takes 0.250 ms more than `cache=off` at the median"), "{md}");
    assert!(md.contains("the cache made its p50 7.0× faster, against 23× for the `/api/categories` aggregate."));
    assert!(md.contains("the hit ratio was 97.2% at 1% writes."), "{md}");
    assert!(md.contains("- The miss goal counts round trips:"), "{md}");
    assert!(md.contains("judged at the lightest load that reaches 20,000 requests/s"), "{md}");
    // Every table row has as many cells as its header.
    let mut cols = 0;
    for line in md.lines() {
        if line.starts_with("| ") && !md.contains(&format!("{line}\n|---")) {
            assert_eq!(line.matches(" | ").count() + 1, cols, "row {line:?}");
        } else if line.starts_with("| ") {
            cols = line.matches(" | ").count() + 1;
        }
    }
}

#[test]
fn json_has_the_documented_shape() {
    let v = serde_json::to_value(custom_report()).expect("serializable");
    assert_eq!(v["environment"]["cores"], 2);
    assert_eq!(v["settings"]["concurrency"], 32);
    let c = &v["endpoints"][0];
    assert_eq!(c["endpoint"], "categories");
    assert_eq!(c["database"]["cache"], "off");
    assert_eq!(c["database"]["requests_per_s"], 850.0);
    assert_eq!(c["cache"]["latency"]["p50_ms"], 1.58);
    assert_eq!(c["cache"]["hit_ratio"], 1.0);
    assert_eq!(c["speedup"]["db_load_reduction_pct"], 100.0);
    assert!(v["miss_path"].is_null());
    let bar = serde_json::to_value(evaluate_bar(&[], None, None)).expect("serializable");
    assert_eq!(bar[0]["status"], "not_measured");
}

#[test]
fn splice_keeps_the_history() {
    let fresh = splice(None, "TABLES v1\n");
    assert!(fresh.starts_with("# Benchmarks\n"));
    assert!(fresh.contains(&format!("{BEGIN}\nTABLES v1\n{END}\n\n## History\n")));
    let edited = fresh.replace("## History\n", "## History\n\n- 2026-11-20: before the L1 cache, 18k req/s\n");
    let again = splice(Some(&edited), "TABLES v2");
    assert!(again.contains(&format!("{BEGIN}\nTABLES v2\n{END}")));
    assert!(!again.contains("TABLES v1"));
    assert!(again.contains("- 2026-11-20: before the L1 cache, 18k req/s"));
    assert_eq!(again.matches(BEGIN).count(), 1);
    let by_hand = splice(Some("# Mine\n\nnotes\n"), "T");
    assert_eq!(by_hand, format!("# Mine\n\nnotes\n\n{BEGIN}\nT\n{END}\n"));
}

#[test]
fn numbers_are_formatted_for_people() {
    assert_eq!(fmt_int(1234567.4), "1,234,567");
    assert_eq!(fmt_int(999.5), "1,000");
    assert_eq!(fmt_int(0.0), "0");
    assert_eq!(fmt_ms(0.0804), "0.080");
    assert_eq!(fmt_ms(6.634), "6.63");
    assert_eq!(fmt_ms(36.64), "36.6");
    assert_eq!(fmt_ms(1234.4), "1,234");
    assert_eq!(fmt_x(4.44), "4.4×");
    assert_eq!(fmt_x(23.2), "23×");
    assert_eq!(fmt_share(0.01), "1%");
    assert_eq!(fmt_share(0.025), "2.5%");
    assert_eq!(fmt_mb(14_312_345.0), "14.3 MB");
}

#[test]
fn utc_dates() {
    assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
    assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
    assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
    assert_eq!(utc_date(4_102_444_799), "2099-12-31 23:59 UTC");
}
