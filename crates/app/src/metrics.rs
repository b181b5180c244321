//! Prometheus metrics: one registry, every metric name defined here once.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Buckets from 50 µs to 10 s: a cache hit is sub-millisecond, a slow aggregate with an artificial delay is seconds.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `cache_requests_total{endpoint, result="hit|miss|bypass|error"}`
    pub cache_requests: IntCounterVec,
    /// `http_request_duration_seconds{route, method, status, source}`
    pub http_duration: HistogramVec,
    /// `db_query_duration_seconds{query}`
    pub db_duration: HistogramVec,
    /// `redis_command_duration_seconds{command}`
    pub redis_duration: HistogramVec,
    /// `cache_invalidated_keys_total{reason}`
    pub invalidated_keys: IntCounterVec,
    /// `redis_up`: 1 while the last Redis command succeeded.
    pub redis_up: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let cache_requests = IntCounterVec::new(
            Opts::new("cache_requests_total", "Cacheable requests by endpoint and cache outcome"),
            &["endpoint", "result"],
        )
        .expect("valid metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request duration")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method", "status", "source"],
        )
        .expect("valid metric definition");
        let db_duration = HistogramVec::new(
            HistogramOpts::new("db_query_duration_seconds", "PostgreSQL query duration, artificial delay included")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["query"],
        )
        .expect("valid metric definition");
        let redis_duration = HistogramVec::new(
            HistogramOpts::new("redis_command_duration_seconds", "Redis command duration")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["command"],
        )
        .expect("valid metric definition");
        let invalidated_keys = IntCounterVec::new(
            Opts::new("cache_invalidated_keys_total", "Cache keys removed by writes and flushes"),
            &["reason"],
        )
        .expect("valid metric definition");
        let redis_up = IntGauge::new("redis_up", "1 while Redis answers, 0 after a failed command")
            .expect("valid metric definition");
        for c in [
            Box::new(cache_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(db_duration.clone()),
            Box::new(redis_duration.clone()),
            Box::new(invalidated_keys.clone()),
            Box::new(redis_up.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // process_resident_memory_bytes, process_cpu_seconds_total, ... (Linux only).
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once per registry");
        Metrics { registry, cache_requests, http_duration, db_duration, redis_duration, invalidated_keys, redis_up }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
