//! Prometheus metrics: one registry, every metric defined and registered here once, by the `prometheus`
//! registration macros (name, help and labels in one place).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry, TextEncoder,
    register_histogram_vec_with_registry, register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_with_registry,
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

/// Registration cannot fail but for a duplicate name or a bad definition, both fixed here at compile time.
const DEFINED: &str = "metric defined once with a valid name";

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let latency = |name: &str, help: &str| HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        let metrics = Metrics {
            cache_requests: register_int_counter_vec_with_registry!(
                "cache_requests_total",
                "Cacheable requests by endpoint and cache outcome",
                &["endpoint", "result"],
                r
            )
            .expect(DEFINED),
            http_duration: register_histogram_vec_with_registry!(
                latency("http_request_duration_seconds", "HTTP request duration"),
                &["route", "method", "status", "source"],
                r
            )
            .expect(DEFINED),
            db_duration: register_histogram_vec_with_registry!(
                latency("db_query_duration_seconds", "PostgreSQL query duration, artificial delay included"),
                &["query"],
                r
            )
            .expect(DEFINED),
            redis_duration: register_histogram_vec_with_registry!(
                latency("redis_command_duration_seconds", "Redis command duration"),
                &["command"],
                r
            )
            .expect(DEFINED),
            invalidated_keys: register_int_counter_vec_with_registry!(
                "cache_invalidated_keys_total",
                "Cache keys removed by writes and flushes",
                &["reason"],
                r
            )
            .expect(DEFINED),
            redis_up: register_int_gauge_with_registry!(
                "redis_up",
                "1 while Redis answers, 0 after a failed command",
                r
            )
            .expect(DEFINED),
            redis_circuit_state: register_int_gauge_with_registry!(
                "redis_circuit_state",
                "Redis circuit breaker: 0 closed, 1 half-open, 2 open",
                r
            )
            .expect(DEFINED),
            redis_circuit_transitions: register_int_counter_vec_with_registry!(
                "redis_circuit_transitions_total",
                "Circuit breaker state changes by new state",
                &["to"],
                r
            )
            .expect(DEFINED),
            coalesced: register_int_counter_vec_with_registry!(
                "cache_coalesced_requests_total",
                "Misses answered by a concurrent request's database load (single-flight)",
                &["endpoint"],
                r
            )
            .expect(DEFINED),
            stampede_lock: register_int_counter_vec_with_registry!(
                "cache_stampede_lock_total",
                "Cross-replica stampede lock outcomes",
                &["result"],
                r
            )
            .expect(DEFINED),
            ttl_seconds: register_histogram_with_registry!(
                HistogramOpts::new("cache_ttl_seconds", "TTL given to stored entries, jitter included")
                    .buckets(prometheus::linear_buckets(0.0, 15.0, 25).expect("valid buckets")),
                r
            )
            .expect(DEFINED),
            l1_requests: register_int_counter_vec_with_registry!(
                "cache_l1_requests_total",
                "In-process L1 cache lookups",
                &["result"],
                r
            )
            .expect(DEFINED),
            invalidation_messages: register_int_counter_vec_with_registry!(
                "cache_invalidation_messages_total",
                "Cross-instance invalidation messages",
                &["direction"],
                r
            )
            .expect(DEFINED),
            invalidation_ack_timeouts: register_int_counter_with_registry!(
                "cache_invalidation_ack_timeouts_total",
                "Writes that did not hear from every replica before the ack timeout",
                r
            )
            .expect(DEFINED),
            write_through: register_int_counter_vec_with_registry!(
                "cache_write_through_total",
                "Write-through stores after updates",
                &["result"],
                r
            )
            .expect(DEFINED),
            warmed_keys: register_int_counter_with_registry!(
                "cache_warmed_keys_total",
                "Keys loaded by cache warming",
                r
            )
            .expect(DEFINED),
            registry: r,
        };
        // process_resident_memory_bytes, process_cpu_seconds_total, ... (Linux only).
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once per registry");
        metrics
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
