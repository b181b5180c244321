//! The optional in-process L1 cache in front of Redis (quick_cache), kept correct by an invalidation epoch.
//!
//! Every invalidation bumps the epoch before it removes entries. A request notes the epoch before it reads
//! Redis or PostgreSQL, and stores into L1 only if the epoch is still the same afterwards (checking again
//! after the insert). So a value read before an invalidation cannot outlive it in L1.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quick_cache::UnitWeighter;
use quick_cache::sync::{Cache, DefaultLifecycle};

use super::keys::{CacheKey, Scope};
use crate::metrics::Metrics;

/// An entry, the moment it expires, and whether a write to any product makes it stale (its scope is the catalog).
#[derive(Clone)]
struct Stored {
    value: Bytes,
    expires: Instant,
    catalog: bool,
}

type Entries = Cache<String, Stored, UnitWeighter, ahash::RandomState, DefaultLifecycle<String, Stored>>;

pub struct L1 {
    /// Keyed by the entries' names ([`CacheKey::name`]), without the Redis prefix, which one process shares: an L1
    /// hit does not build the Redis key. A bounded map whose lookup is a read lock and a hash probe (quick_cache);
    /// each entry carries its expiry, checked when it is read. Hashed with aHash's keyed hasher rather than the
    /// standard SipHash: every L1 hit hashes its key, and aHash does it in fewer instructions, with a random key
    /// per process all the same, so keys that clients choose (searches) cannot be made to collide.
    entries: Entries,
    ttl: Duration,
    /// As configured, for `/api/stats` (the shards' capacities add up to about this).
    max_entries: u64,
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    epoch: AtomicU64,
    /// False while this replica cannot hear invalidations from the others: then L1 is bypassed.
    active: AtomicBool,
}

impl L1 {
    pub fn new(max_entries: u64, ttl: Duration, metrics: Metrics) -> Self {
        L1 {
            entries: Cache::with(
                usize::try_from(max_entries).unwrap_or(usize::MAX),
                max_entries,
                UnitWeighter,
                ahash::RandomState::new(),
                DefaultLifecycle::default(),
            ),
            ttl,
            max_entries,
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
        let found = match self.entries.get(key.name()) {
            Some(stored) if stored.expires > Instant::now() => Some(stored.value),
            Some(stored) => {
                // Expired: removed unless a newer value took its place meanwhile.
                self.entries.remove_if(key.name(), |s| s.expires == stored.expires);
                None
            }
            None => None,
        };
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
        self.entries.insert(
            key.name().to_owned(),
            Stored { value, expires: Instant::now() + self.ttl, catalog: key.scope == Scope::Catalog },
        );
        if self.epoch() != epoch {
            self.entries.remove(key.name());
        }
    }

    pub fn invalidate(&self, scopes: &[Scope]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for scope in scopes {
            match scope {
                Scope::Product(id) => {
                    self.entries.remove(CacheKey::product(*id).name());
                }
                Scope::Catalog => self.entries.retain(|_, stored| !stored.catalog),
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
        self.entries.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.active.store(active, Ordering::Release);
    }

    /// Counts live entries only: the expired ones are removed first.
    pub fn stats(&self) -> cache_demo_api::L1 {
        let now = Instant::now();
        self.entries.retain(|_, stored| stored.expires > now);
        cache_demo_api::L1 {
            enabled: true,
            active: self.is_active(),
            entries: self.entries.len() as u64,
            ttl_ms: self.ttl.as_millis() as u64,
            max_entries: self.max_entries,
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
    fn entries_expire_after_their_ttl_and_are_not_counted_then() {
        // Long enough that the first checks run well inside it, even on a busy machine.
        let l1 = L1::new(100, Duration::from_millis(1_000), Metrics::new());
        l1.start_serving();
        let e = l1.epoch();
        l1.insert_if_current(&CacheKey::product(1), Bytes::from_static(b"1"), e);
        l1.insert_if_current(&CacheKey::product(2), Bytes::from_static(b"2"), e);
        assert_eq!(l1.stats().entries, 2);
        assert!(l1.get(&CacheKey::product(1)).is_some());
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(l1.get(&CacheKey::product(1)), None, "expired");
        // A new value after expiry is served again.
        l1.insert_if_current(&CacheKey::product(1), Bytes::from_static(b"new"), l1.epoch());
        assert_eq!(l1.get(&CacheKey::product(1)), Some(Bytes::from_static(b"new")));
        let stats = l1.stats();
        assert_eq!((stats.entries, stats.ttl_ms, stats.max_entries), (1, 1_000, 100), "product 2 expired unread");
    }

    #[test]
    fn holds_about_its_maximum_and_keeps_what_is_read() {
        let l1 = l1();
        let e = l1.epoch();
        let hot = CacheKey::product(0);
        l1.insert_if_current(&hot, Bytes::from_static(b"hot"), e);
        for id in 1..1_000 {
            l1.insert_if_current(&CacheKey::product(id), Bytes::from_static(b"v"), e);
            assert!(l1.get(&hot).is_some(), "an entry read all along is kept ({id} inserted)");
        }
        assert!(l1.stats().entries <= 110, "{} entries for a maximum of 100", l1.stats().entries);
    }

    #[test]
    fn clearing_empties_and_keeps_serving() {
        let l1 = l1();
        l1.insert_if_current(&CacheKey::product(1), Bytes::from_static(b"1"), l1.epoch());
        l1.clear();
        assert_eq!(l1.get(&CacheKey::product(1)), None);
        assert!(l1.is_active());
        assert_eq!(l1.stats().entries, 0);
    }

    #[test]
    fn catalog_invalidation_keeps_product_entries() {
        let l1 = l1();
        let e = l1.epoch();
        l1.insert_if_current(&CacheKey::product(1), Bytes::from_static(b"1"), e);
        l1.insert_if_current(&CacheKey::top_products(10), Bytes::from_static(b"t"), e);
        l1.insert_if_current(&CacheKey::categories(), Bytes::from_static(b"c"), e);
        l1.insert_if_current(&CacheKey::search("usb c", 20), Bytes::from_static(b"s"), e);
        l1.invalidate(&[Scope::Catalog]);
        assert!(l1.get(&CacheKey::product(1)).is_some());
        assert!(l1.get(&CacheKey::top_products(10)).is_none());
        assert!(l1.get(&CacheKey::categories()).is_none());
        assert!(l1.get(&CacheKey::search("usb c", 20)).is_none());
    }
}
