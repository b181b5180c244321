//! The JSON bodies the app serves and other crates read, defined once: `GET /api/stats` ([`Stats`]).
//!
//! The app serializes these; the bench deserializes them, also from older builds of the app, so every field
//! the bench reads has a default for when it is missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `GET /api/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    #[serde(flatten)]
    pub counters: Counters,
    /// Keys under this app's prefix (SCAN); null when Redis is unavailable.
    #[serde(default)]
    pub keys: Option<usize>,
    #[serde(default)]
    pub key_prefix: String,
    /// TTL of each cacheable endpoint's entries, by its metrics label.
    #[serde(default)]
    pub ttl_secs: BTreeMap<String, u64>,
    #[serde(default)]
    pub db_delay_ms: u64,
    #[serde(default)]
    pub uptime_secs: u64,
    #[serde(default)]
    pub redis: Redis,
    /// The in-process L1: null when it is off; missing from builds that have none.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub l1: Option<Option<L1>>,
    /// Which caching patterns are switched on; missing from older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Patterns>,
    /// The replica that answered; missing from older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Every replica's counters and their sum; missing from older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Fleet>,
}

/// The counters of every replica, as exchanged through Redis, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    /// False while Redis is unreachable: then only the answering replica is counted.
    pub aggregated: bool,
    pub totals: FleetCounters,
    /// Sorted by id.
    pub replicas: Vec<ReplicaCounters>,
}

/// Cacheable requests and database queries since the last flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetCounters {
    #[serde(flatten)]
    pub counters: Counters,
    #[serde(default)]
    pub db_queries: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaCounters {
    pub id: String,
    /// The replica that answered.
    #[serde(rename = "self")]
    pub is_self: bool,
    #[serde(flatten)]
    pub counters: FleetCounters,
    /// How old these figures are.
    pub age_ms: u64,
}

/// A field that is present, even as `null`, is `Some`; only a missing one is `None` (by `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Cacheable requests since start or the last flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    #[serde(default)]
    pub hits: u64,
    #[serde(default)]
    pub misses: u64,
    #[serde(default)]
    pub bypasses: u64,
    #[serde(default)]
    pub errors: u64,
    /// hits / (hits + misses + errors); `None` before the first cacheable request.
    #[serde(default)]
    pub hit_rate: Option<f64>,
}

impl Counters {
    /// The counters with their hit rate.
    pub fn new(hits: u64, misses: u64, bypasses: u64, errors: u64) -> Self {
        let lookups = hits + misses + errors;
        Counters { hits, misses, bypasses, errors, hit_rate: (lookups > 0).then(|| hits as f64 / lookups as f64) }
    }
}

impl std::ops::Add for Counters {
    type Output = Counters;

    fn add(self, o: Counters) -> Counters {
        Counters::new(self.hits + o.hits, self.misses + o.misses, self.bypasses + o.bypasses, self.errors + o.errors)
    }
}

impl std::ops::Add for FleetCounters {
    type Output = FleetCounters;

    fn add(self, o: FleetCounters) -> FleetCounters {
        FleetCounters { counters: self.counters + o.counters, db_queries: self.db_queries + o.db_queries }
    }
}

/// Redis as the app sees it: reachable or not, the breaker, and selected `INFO` fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Redis {
    #[serde(default)]
    pub available: bool,
    #[serde(default)]
    pub circuit: String,
    /// Why Redis is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub info: Info,
}

/// The `INFO` fields shown; each missing while Redis is unavailable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_memory_human: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_memory_peak_human: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmemory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmemory_human: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmemory_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evicted_keys: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_keys: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyspace_hits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyspace_misses: Option<u64>,
}

impl Info {
    /// Sets the field named like an `INFO` line's key; other keys and unreadable values are skipped.
    pub fn set(&mut self, key: &str, value: &str) {
        let text = || Some(value.to_owned());
        let number = || value.parse().ok();
        match key {
            "redis_version" => self.redis_version = text(),
            "used_memory" => self.used_memory = number(),
            "used_memory_human" => self.used_memory_human = text(),
            "used_memory_peak_human" => self.used_memory_peak_human = text(),
            "maxmemory" => self.maxmemory = number(),
            "maxmemory_human" => self.maxmemory_human = text(),
            "maxmemory_policy" => self.maxmemory_policy = text(),
            "evicted_keys" => self.evicted_keys = number(),
            "expired_keys" => self.expired_keys = number(),
            "keyspace_hits" => self.keyspace_hits = number(),
            "keyspace_misses" => self.keyspace_misses = number(),
            _ => {}
        }
    }
}

/// The in-process L1 cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L1 {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// False while the app cannot hear invalidations from other replicas: then L1 is bypassed.
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub entries: u64,
    #[serde(default)]
    pub ttl_ms: u64,
    #[serde(default)]
    pub max_entries: u64,
}

fn yes() -> bool {
    true
}

/// The caching patterns and their switches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Patterns {
    pub single_flight: bool,
    pub stampede_lock: bool,
    pub ttl_jitter_pct: u8,
    pub circuit_breaker: bool,
    pub l1: bool,
    pub write_through: bool,
    pub warm_on_start: bool,
    pub warm_interval_secs: u64,
    pub invalidation_subscribed: bool,
    pub admin_token_required: bool,
}

impl Patterns {
    /// Those switched on, by name, with their value when it is a number: `single_flight, ttl_jitter_pct=10`.
    pub fn switched_on(&self) -> Vec<String> {
        let Ok(Value::Object(fields)) = serde_json::to_value(self) else { return Vec::new() };
        let mut on: Vec<String> = fields
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::Bool(true) => Some(k),
                Value::Number(n) if n.as_f64().is_some_and(|n| n != 0.0) => Some(format!("{k}={n}")),
                _ => None,
            })
            .collect();
        on.sort();
        on
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn what_the_app_writes_reads_back() {
        let mut info = Info::default();
        info.set("evicted_keys", "3");
        info.set("maxmemory_policy", "allkeys-lru");
        info.set("uptime_in_days", "1");
        let stats = Stats {
            counters: Counters { hits: 2, misses: 1, bypasses: 0, errors: 0, hit_rate: Some(2.0 / 3.0) },
            redis: Redis { available: true, circuit: "closed".into(), error: None, info },
            l1: Some(None),
            patterns: Some(Patterns { single_flight: true, ..Patterns::default() }),
            ..Stats::default()
        };
        let text = serde_json::to_value(&stats).expect("serializes");
        assert_eq!(text["hits"], 2);
        assert_eq!(text["redis"]["evicted_keys"], 3);
        assert_eq!(text["redis"].get("uptime_in_days"), None);
        assert_eq!(text["l1"], Value::Null);
        assert_eq!(serde_json::from_value::<Stats>(text).expect("reads back"), stats);
    }

    #[test]
    fn counters_add_up_with_their_hit_rate() {
        let sum = Counters::new(3, 1, 5, 0) + Counters::new(1, 3, 0, 0);
        assert_eq!((sum.hits, sum.misses, sum.bypasses), (4, 4, 5));
        assert_eq!(sum.hit_rate, Some(0.5));
        assert_eq!(Counters::new(0, 0, 7, 0).hit_rate, None, "bypasses are not lookups");
    }

    #[test]
    fn a_replica_reads_as_the_page_expects() {
        let r = ReplicaCounters {
            id: "a".into(),
            is_self: true,
            counters: FleetCounters { counters: Counters::new(1, 1, 0, 0), db_queries: 1 },
            age_ms: 0,
        };
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(v["self"], true);
        assert_eq!(v["hit_rate"], 0.5);
        assert_eq!(v["db_queries"], 1);
    }

    #[test]
    fn a_missing_l1_differs_from_a_null_one() {
        let absent: Stats = serde_json::from_value(json!({"hits": 1})).expect("stats");
        assert_eq!(absent.l1, None);
        let off: Stats = serde_json::from_value(json!({"l1": null})).expect("stats");
        assert_eq!(off.l1, Some(None));
    }

    #[test]
    fn patterns_switched_on_are_listed_by_name() {
        let p = Patterns { single_flight: true, ttl_jitter_pct: 10, ..Patterns::default() };
        assert_eq!(p.switched_on(), ["single_flight", "ttl_jitter_pct=10"]);
        assert!(Patterns::default().switched_on().is_empty());
    }
}
