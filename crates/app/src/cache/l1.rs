//! The optional in-process L1 cache in front of Redis (moka), kept correct by an invalidation epoch.
//!
//! Every invalidation bumps the epoch before it removes entries. A request notes the epoch before it reads
//! Redis or PostgreSQL, and stores into L1 only if the epoch is still the same afterwards (checking again
//! after the insert). So a value read before an invalidation cannot outlive it in L1.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache as Moka;

use super::keys::{CacheKey, Scope, is_catalog_name};
use crate::metrics::Metrics;

pub struct L1 {
    /// Keyed by the entries' names ([`CacheKey::name`]), without the Redis prefix, which one process shares: an L1
    /// hit does not build the Redis key. Hashed with aHash's keyed hasher rather than the standard SipHash: every L1 hit hashes its key, and
    /// aHash does it in about a third of the instructions, with a random key per process all the same, so
    /// keys that clients choose (searches) cannot be made to collide.
    entries: Moka<String, Bytes, ahash::RandomState>,
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    epoch: AtomicU64,
    /// False while this replica cannot hear invalidations from the others: then L1 is bypassed.
    active: AtomicBool,
}

impl L1 {
    pub fn new(max_entries: u64, ttl: Duration, metrics: Metrics) -> Self {
        L1 {
            entries: Moka::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build_with_hasher(ahash::RandomState::new()),
            hits: metrics.l1_requests.with_label_values(&["hit"]),
            misses: metrics.l1_requests.with_label_values(&["miss"]),
            epoch: AtomicU64::new(0),
            active: AtomicBool::new(false),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        if !self.is_active() {
            return None;
        }
        let found = self.entries.get(key.name());
        if found.is_some() { &self.hits } else { &self.misses }.inc();
        found
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn insert_if_current(&self, key: &CacheKey, value: Bytes, epoch: u64) {
        if !self.is_active() || self.epoch() != epoch {
            return;
        }
        self.entries.insert(key.name().to_owned(), value);
        if self.epoch() != epoch {
            self.entries.invalidate(key.name());
        }
    }

    pub fn invalidate(&self, scopes: &[Scope]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for scope in scopes {
            match scope {
                Scope::Product(id) => self.entries.invalidate(CacheKey::product(*id).name()),
                Scope::Catalog => {
                    let catalog: Vec<String> = self
                        .entries
                        .iter()
                        .filter(|(k, _)| is_catalog_name(k))
                        .map(|(k, _)| k.as_ref().clone())
                        .collect();
                    for k in catalog {
                        self.entries.invalidate(&k);
                    }
                }
            }
        }
    }

    /// Empties L1 and serves from it: this replica hears invalidations (again).
    pub fn start_serving(&self) {
        self.reset(true);
    }

    /// Empties L1 and bypasses it: this replica could miss invalidations.
    pub fn stop_serving(&self) {
        self.reset(false);
    }

    /// Empties L1, serving or not as before (a flush).
    pub fn clear(&self) {
        self.reset(self.is_active());
    }

    fn reset(&self, active: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.active.store(false, Ordering::Release);
        self.entries.invalidate_all();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.active.store(active, Ordering::Release);
    }

    pub fn stats(&self) -> cache_demo_api::L1 {
        self.entries.run_pending_tasks();
        cache_demo_api::L1 {
            enabled: true,
            active: self.is_active(),
            entries: self.entries.entry_count(),
            ttl_ms: self.entries.policy().time_to_live().map_or(0, |d| d.as_millis() as u64),
            max_entries: self.entries.policy().max_capacity().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l1() -> L1 {
        let l1 = L1::new(100, Duration::from_secs(60), Metrics::new());
        l1.start_serving();
        l1
    }

    #[test]
    fn stores_and_serves_while_active() {
        let l1 = l1();
        let e = l1.epoch();
        l1.insert_if_current(&CacheKey::product(1), Bytes::from_static(b"v"), e);
        assert_eq!(l1.get(&CacheKey::product(1)), Some(Bytes::from_static(b"v")));
        l1.stop_serving();
        assert_eq!(l1.get(&CacheKey::product(1)), None, "inactive L1 is bypassed");
    }

    #[test]
    fn a_value_read_before_an_invalidation_is_not_stored() {
        let l1 = l1();
        let before = l1.epoch();
        l1.invalidate(&[Scope::Product(1)]);
        l1.insert_if_current(&CacheKey::product(1), Bytes::from_static(b"old"), before);
        assert_eq!(l1.get(&CacheKey::product(1)), None);
    }

    #[test]
    fn catalog_invalidation_keeps_product_entries() {
        let l1 = l1();
        let e = l1.epoch();
        l1.insert_if_current(&CacheKey::product(1), Bytes::from_static(b"1"), e);
        l1.insert_if_current(&CacheKey::top_products(10), Bytes::from_static(b"t"), e);
        l1.insert_if_current(&CacheKey::categories(), Bytes::from_static(b"c"), e);
        l1.invalidate(&[Scope::Catalog]);
        assert!(l1.get(&CacheKey::product(1)).is_some());
        assert!(l1.get(&CacheKey::top_products(10)).is_none());
        assert!(l1.get(&CacheKey::categories()).is_none());
    }
}
