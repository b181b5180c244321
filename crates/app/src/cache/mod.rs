//! The cache-aside core: look in Redis, load from PostgreSQL on a miss, store with a TTL; invalidate on writes.
//!
//! # Why loads cannot put stale data back
//! A reader that missed may read a row from PostgreSQL *before* a write commits and try to store it *after*
//! the write invalidated the key. To rule that out every entry belongs to a [`Scope`] whose current
//! *generation token* lives in its own key, `<prefix>:generation:<scope>`:
//! 1. the lookup (one round trip: `MGET` of the entry and the token) returns the value, or on a miss the scope's
//!    token; a scope without one first gets a random one (the `CLAIM` script, a second round trip, rare: a
//!    flush keeps the tokens);
//! 2. the reader loads from PostgreSQL;
//! 3. the fill script stores the value only if the token is still the same.
//!
//! A write commits, then replaces the tokens of the scopes it touches with fresh random ones and unlinks the
//! entries. A load that read old data read its token before the write's commit, so the token has changed by
//! the time its fill runs (the fill and the token change are atomic scripts): the fill is skipped. Tokens are
//! random, never counters, so an evicted token cannot make an old one valid again. A flush keeps the tokens
//! (it changes no data); a write whose scopes are not known removes every token before anything else.

//!
//! Where to read what: the read path (hit, miss, fill) in `read`, the stampede lock in `lock`, writes and
//! flushes in `invalidate`, every Redis name in `keys`, the scripts in `scripts`, single-flight in `flight`,
//! the L1 in `l1` and the pub/sub that keeps replicas' L1s correct in `bus`, the connection (timeouts,
//! breaker, availability) in `connection`.

mod admin;
mod breaker;
mod bus;
mod connection;
mod endpoint;
mod flight;
mod invalidate;
mod keys;
mod l1;
mod lock;
mod options;
mod outcome;
mod pending;
mod read;
mod scripts;
mod shared;
mod stats;
mod ttl;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use self::breaker::BreakerConfig;
use self::bus::Bus;
pub use self::connection::{CacheError, RedisClient};
pub use self::endpoint::{ByEndpoint, Endpoint};
use self::flight::Flights;
pub use self::invalidate::Invalidation;
pub use self::keys::{CacheKey, Keyspace, Scope, normalize_term};
use self::l1::L1;
pub use self::options::{CacheOptions, L1Options};
pub use self::outcome::{Cached, Level, Outcome, Primed, Reported};
pub use self::read::{ProductLookup, Via};
use self::stats::Stats;
pub use self::stats::Totals;
use crate::metrics::Metrics;

/// The cache, cheap to clone: one per app, shared by every request.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Arc<RedisClient>,
    keyspace: Keyspace,
    opts: CacheOptions,
    metrics: Metrics,
    stats: Stats,
    flights: Arc<Flights>,
    l1: Option<Arc<L1>>,
    bus: Arc<Bus>,
    key_count: admin::KeyCount,
    pending: pending::Pending,
    bump: ::redis::Script,
    unlock: ::redis::Script,
}

impl Cache {
    pub fn new(redis: Arc<RedisClient>, keyspace: Keyspace, opts: CacheOptions, metrics: Metrics) -> Self {
        let l1 = opts.l1.map(|o| Arc::new(L1::new(o.max_entries, o.ttl, metrics.clone())));
        let flights = Arc::new(Flights::default());
        let pending = pending::Pending::new(opts.max_owed_scopes);
        let bus = Bus::new(
            redis.clone(),
            &keyspace,
            l1.clone(),
            flights.clone(),
            opts.invalidation_ack_timeout,
            metrics.clone(),
        );
        Cache {
            inner: Arc::new(Inner {
                redis,
                stats: Stats::new(&metrics),
                keyspace,
                opts,
                metrics,
                flights,
                l1,
                bus,
                key_count: admin::KeyCount::default(),
                pending,
                bump: ::redis::Script::new(scripts::BUMP_AND_UNLINK),
                unlock: ::redis::Script::new(scripts::UNLOCK),
            }),
        }
    }

    /// Starts the background work (the invalidation subscription, the retry of invalidations Redis did not
    /// take) until `shutdown`.
    pub fn start(&self, shutdown: CancellationToken) {
        tokio::spawn(self.inner.bus.clone().run(shutdown.clone()));
        tokio::spawn(self.clone().retry_pending(shutdown));
    }

    pub fn options(&self) -> &CacheOptions {
        &self.inner.opts
    }

    pub fn l1_stats(&self) -> Option<cache_demo_api::L1> {
        self.inner.l1.as_ref().map(|l1| l1.stats())
    }

    pub fn invalidation_subscribed(&self) -> bool {
        self.inner.bus.is_subscribed()
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.inner.keyspace
    }

    pub fn redis(&self) -> &RedisClient {
        &self.inner.redis
    }

    /// Requests by outcome since start, never reset.
    pub fn totals(&self) -> Totals {
        self.inner.stats.totals()
    }

    /// Sets the counters of [`Cache::counters`] back to zero (another replica flushed).
    pub fn reset_counters(&self) {
        self.inner.stats.reset();
    }

    /// Hits, misses, bypasses and errors since start or the last flush.
    pub fn counters(&self) -> cache_demo_api::Counters {
        self.inner.stats.snapshot()
    }
}
