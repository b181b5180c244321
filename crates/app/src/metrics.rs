//! Prometheus metrics: one registry, every metric name defined here once.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

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
    /// `redis_circuit_state`: 0 closed, 1 half-open, 2 open.
    pub redis_circuit_state: IntGauge,
    /// `redis_circuit_transitions_total{to}`
    pub redis_circuit_transitions: IntCounterVec,
    /// `cache_coalesced_requests_total{endpoint}`: misses answered by another request's load (single-flight).
    pub coalesced: IntCounterVec,
    /// `cache_stampede_lock_total{result="acquired|waited|timeout"}`
    pub stampede_lock: IntCounterVec,
    /// `cache_ttl_seconds`: TTLs given to stored entries, jitter included.
    pub ttl_seconds: Histogram,
    /// `cache_l1_requests_total{result="hit|miss"}`
    pub l1_requests: IntCounterVec,
    /// `cache_invalidation_messages_total{direction="sent|received"}`
    pub invalidation_messages: IntCounterVec,
    /// `cache_invalidation_ack_timeouts_total`: writes that did not hear from every replica in time.
    pub invalidation_ack_timeouts: IntCounter,
    /// `cache_write_through_total{result="stored|skipped"}`
    pub write_through: IntCounterVec,
    /// `cache_warmed_keys_total`
    pub warmed_keys: IntCounter,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
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
        let redis_circuit_state =
            IntGauge::new("redis_circuit_state", "Redis circuit breaker: 0 closed, 1 half-open, 2 open")
                .expect("valid metric definition");
        let redis_circuit_transitions =
            counter_vec("redis_circuit_transitions_total", "Circuit breaker state changes by new state", &["to"]);
        let coalesced = counter_vec(
            "cache_coalesced_requests_total",
            "Misses answered by a concurrent request's database load (single-flight)",
            &["endpoint"],
        );
        let stampede_lock =
            counter_vec("cache_stampede_lock_total", "Cross-replica stampede lock outcomes", &["result"]);
        let ttl_seconds = Histogram::with_opts(
            HistogramOpts::new("cache_ttl_seconds", "TTL given to stored entries, jitter included")
                .buckets(prometheus::linear_buckets(0.0, 15.0, 25).expect("valid buckets")),
        )
        .expect("valid metric definition");
        let l1_requests = counter_vec("cache_l1_requests_total", "In-process L1 cache lookups", &["result"]);
        let invalidation_messages =
            counter_vec("cache_invalidation_messages_total", "Cross-instance invalidation messages", &["direction"]);
        let invalidation_ack_timeouts = IntCounter::new(
            "cache_invalidation_ack_timeouts_total",
            "Writes that did not hear from every replica before the ack timeout",
        )
        .expect("valid metric definition");
        let write_through = counter_vec("cache_write_through_total", "Write-through stores after updates", &["result"]);
        let warmed_keys = IntCounter::new("cache_warmed_keys_total", "Keys loaded by cache warming")
            .expect("valid metric definition");
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(cache_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(db_duration.clone()),
            Box::new(redis_duration.clone()),
            Box::new(invalidated_keys.clone()),
            Box::new(redis_up.clone()),
            Box::new(redis_circuit_state.clone()),
            Box::new(redis_circuit_transitions.clone()),
            Box::new(coalesced.clone()),
            Box::new(stampede_lock.clone()),
            Box::new(ttl_seconds.clone()),
            Box::new(l1_requests.clone()),
            Box::new(invalidation_messages.clone()),
            Box::new(invalidation_ack_timeouts.clone()),
            Box::new(write_through.clone()),
            Box::new(warmed_keys.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        // process_resident_memory_bytes, process_cpu_seconds_total, ... (Linux only).
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once per registry");
        Metrics {
            registry,
            cache_requests,
            http_duration,
            db_duration,
            redis_duration,
            invalidated_keys,
            redis_up,
            redis_circuit_state,
            redis_circuit_transitions,
            coalesced,
            stampede_lock,
            ttl_seconds,
            l1_requests,
            invalidation_messages,
            invalidation_ack_timeouts,
            write_through,
            warmed_keys,
        }
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
