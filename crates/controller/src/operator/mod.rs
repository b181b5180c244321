//! `cache-demo-ctl operator`: keeps every `CacheDemo` resource true. A kube-runtime [`Controller`] watches the
//! CacheDemos of one namespace and every child they own; each change (or a requeue) runs [`reconcile`], which
//! builds the children with the same builders as `up`, server-side-applies them under one field manager (a
//! deleted child comes back, an edited one is reverted, an unchanged one is left alone), reads how they are
//! doing and writes the status only when it changed. Kubernetes deletes the children with their CacheDemo
//! (owner references).

mod reconcile;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::apply;
use crate::crd::CacheDemo;
use crate::settings::{InvalidSetting, names};

pub use reconcile::reconcile;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The namespace whose CacheDemos it keeps (a namespaced Role is all it needs).
    pub namespace: String,
    /// Look again this often once everything is ready (pods, live cache figures).
    pub requeue: Duration,
    /// ... and this often while something is starting or stuck.
    pub requeue_progressing: Duration,
    /// Upper bound of reading the app's `/api/stats`.
    pub stats_timeout: Duration,
}

impl Config {
    pub fn new(namespace: &str) -> Config {
        Config {
            namespace: namespace.into(),
            requeue: Duration::from_secs(30),
            requeue_progressing: Duration::from_secs(5),
            stats_timeout: Duration::from_secs(2),
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub config: Config,
    /// Failures in a row per CacheDemo (namespace/name), for the retry backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// When each CacheDemo's figures were last read from its app.
    figures_read: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl Context {
    /// True (and noted) when the figures of `key` were last read a refresh interval ago or never: under traffic
    /// they change on every read, so they are read at most once per interval, not on every reconcile.
    pub fn figures_due(&self, key: &str) -> bool {
        let mut read = self.figures_read.lock().unwrap_or_else(|e| e.into_inner());
        let due = read.get(key).is_none_or(|at| at.elapsed() >= self.config.requeue);
        if due {
            read.insert(key.to_owned(), Instant::now());
        }
        due
    }
}

/// The longest wait before a failed reconcile is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait after the `n`th failure in a row: the progressing interval, doubled per failure, at most
/// [`MAX_BACKOFF`].
pub fn backoff(base: Duration, failures: u32) -> Duration {
    base.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// Why a reconcile failed; it is retried with backoff, and other CacheDemos are not held up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("invalid spec: {0}")]
    Invalid(#[from] InvalidSetting),
    #[error("CacheDemo {0} has no namespace or uid yet")]
    Incomplete(String),
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The `error` label of `cache_demo_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Apply(e) => match e {
                apply::Error::RequestTimeout { .. } => "request_timeout",
                apply::Error::NamespaceTerminating { .. } => "namespace_terminating",
                _ => "apply",
            },
            Error::Invalid(_) => "invalid_spec",
            Error::Incomplete(_) => "incomplete",
            Error::Kube { .. } => "api",
        }
    }
}

/// The operator's own metrics, on `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("cache_demo_operator_reconciles_total", "Reconciles of CacheDemo resources, by outcome"),
            &["outcome"],
        )
        .expect("static metric definition");
        let errors = IntCounterVec::new(
            Opts::new("cache_demo_operator_reconcile_errors_total", "Failed reconciles, by error"),
            &["error"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new("cache_demo_operator_reconcile_duration_seconds", "Time one reconcile took")
                .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &[],
        )
        .expect("static metric definition");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics { registry, reconciles, errors, duration }
    }

    fn observe(&self, started: Instant, result: &Result<Action, Error>) {
        self.duration.with_label_values::<&str>(&[]).observe(started.elapsed().as_secs_f64());
        match result {
            Ok(_) => self.reconciles.with_label_values(&["ok"]).inc(),
            Err(e) => {
                self.reconciles.with_label_values(&["error"]).inc();
                self.errors.with_label_values(&[e.metric_label()]).inc();
            }
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Logs a failed reconcile and retries it with a backoff that doubles per failure in a row; other CacheDemos
/// are reconciled meanwhile. (Counting happens in [`Metrics::observe`].)
pub fn error_policy(demo: Arc<CacheDemo>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = key(&demo);
    let failures = {
        let mut map = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let wait = backoff(ctx.config.requeue_progressing, failures);
    eprintln!(
        "reconcile of cachedemo/{key} failed ({}, {failures} in a row, next try in {}s): {error}",
        error.metric_label(),
        wait.as_secs()
    );
    Action::requeue(wait)
}

fn key(demo: &CacheDemo) -> String {
    format!("{}/{}", kube::ResourceExt::namespace(demo).unwrap_or_default(), kube::ResourceExt::name_any(demo))
}

/// The operator's context for `client`.
pub fn context(client: Client, config: Config, reporter: &str) -> Arc<Context> {
    let reporter = Reporter { controller: names::FIELD_MANAGER.into(), instance: Some(reporter.into()) };
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics: Metrics::new(),
        config,
        failures: Default::default(),
        figures_read: Default::default(),
    })
}

/// Runs the controller until `shutdown` completes.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let ns = ctx.config.namespace.clone();
    let client = ctx.client.clone();
    let demos: Api<CacheDemo> = Api::namespaced(client.clone(), &ns);
    // Children are found by label, so only cache-demo's objects are watched.
    let ours = || watcher::Config::default().labels(&format!("app.kubernetes.io/part-of={}", names::PART_OF));
    Controller::new(demos, watcher::Config::default())
        .owns(Api::<Deployment>::namespaced(client.clone(), &ns), ours())
        .owns(Api::<Service>::namespaced(client.clone(), &ns), ours())
        .owns(Api::<ConfigMap>::namespaced(client.clone(), &ns), ours())
        .owns(Api::<Secret>::namespaced(client.clone(), &ns), ours())
        .owns(Api::<NetworkPolicy>::namespaced(client.clone(), &ns), ours())
        .owns(Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns), ours())
        .graceful_shutdown_on(shutdown)
        .run(reconcile_measured, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                eprintln!("operator: {e}");
            }
        })
        .await;
}

async fn reconcile_measured(demo: Arc<CacheDemo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(&demo);
    let result = reconcile(demo, ctx.clone()).await;
    ctx.metrics.observe(started, &result);
    if result.is_ok() {
        ctx.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }
    result
}

/// `/healthz`, `/readyz` and `/metrics` of the operator, on `addr`.
pub async fn serve_probes(
    ctx: Arc<Context>,
    addr: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let metrics = ctx.metrics.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(move || std::future::ready(metrics.render())));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_five_minutes() {
        let base = Duration::from_secs(5);
        let waits: Vec<u64> = (1..=9).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(base, u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn metrics_count_outcomes_and_errors_by_kind() {
        let metrics = Metrics::new();
        metrics.observe(Instant::now(), &Ok(Action::await_change()));
        metrics.observe(Instant::now(), &Err(Error::Incomplete("demo".into())));
        let text = metrics.render();
        assert!(text.contains("cache_demo_operator_reconciles_total{outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("cache_demo_operator_reconciles_total{outcome=\"error\"} 1"), "{text}");
        assert!(text.contains("cache_demo_operator_reconcile_errors_total{error=\"incomplete\"} 1"), "{text}");
        assert!(text.contains("cache_demo_operator_reconcile_duration_seconds_count 2"), "{text}");
    }
}
