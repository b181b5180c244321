//! The cache-aside core: look in Redis, load from PostgreSQL on a miss, store with a TTL; invalidate on writes.
//!
//! # Why loads cannot put stale data back
//! A reader that missed may read a row from PostgreSQL *before* a write commits and try to store it *after*
//! the write invalidated the key. To rule that out every entry belongs to a [`Scope`] whose current
//! *generation token* lives in the hash `<prefix>:generations`:
//! 1. the lookup (one Lua script, one round trip) returns the value, or on a miss the scope's token, creating a
//!    random one if there is none;
//! 2. the reader loads from PostgreSQL;
//! 3. the fill script stores the value only if the token is still the same.
//!
//! A write commits, then replaces the tokens of the scopes it touches with fresh random ones and unlinks the
//! entries. A load that read old data read its token before the write's commit, so the token has changed by
//! the time its fill runs (the fill and the token change are atomic scripts): the fill is skipped. Tokens are
//! random, never counters, so an evicted or flushed hash cannot make an old token valid again.

mod breaker;
mod bus;
mod flight;
mod keys;
mod l1;
mod redis;
mod ttl;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use self::breaker::{BreakerConfig, State as BreakerState};
pub use self::bus::Announced;
use self::bus::Bus;
use self::flight::{Flights, Join, Shared};
pub use self::keys::{CacheKey, Endpoint, Keyspace, Scope, normalize_term};
use self::l1::L1;
pub use self::l1::L1Stats;
pub use self::redis::{CacheError, RedisClient};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Where a response came from; drives the `X-Cache` header, `source` in the body, and the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    /// `?cache=off`: PostgreSQL only, nothing stored.
    Bypass,
    /// Redis failed or timed out; answered from PostgreSQL.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Hit, Outcome::Miss, Outcome::Bypass, Outcome::Error];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
            Outcome::Error => "error",
        }
    }

    /// `X-Cache` value. A Redis failure is reported as a miss (the cache did not answer) plus `X-Cache-Error`.
    pub fn header(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss | Outcome::Error => "MISS",
            Outcome::Bypass => "BYPASS",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Outcome::Hit => "cache",
            _ => "database",
        }
    }
}

/// A cacheable response: the JSON bytes of the payload exactly as stored in Redis, and how they were obtained.
#[derive(Debug, Clone)]
pub struct Cached {
    pub data: Bytes,
    pub outcome: Outcome,
    /// Which cache answered a hit.
    pub level: Option<Level>,
    /// Whether this request stored the value in Redis.
    pub stored: bool,
    pub redis_time: Option<Duration>,
    pub db_time: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The in-process cache.
    L1,
    /// Redis.
    L2,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
        }
    }
}

/// How the cache behaves; every pattern has its switch here.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub ttls: Ttls,
    pub ttl_jitter_pct: u8,
    pub single_flight: bool,
    pub single_flight_wait: Duration,
    pub stampede_lock: bool,
    pub stampede_lock_ttl: Duration,
    /// `Some((max entries, ttl))` turns the L1 on.
    pub l1: Option<(u64, Duration)>,
    pub invalidation_ack_timeout: Duration,
}

impl CacheOptions {
    pub fn plain(ttl: Duration) -> Self {
        CacheOptions {
            ttls: Ttls::uniform(ttl),
            ttl_jitter_pct: 0,
            single_flight: false,
            single_flight_wait: Duration::from_secs(2),
            stampede_lock: false,
            stampede_lock_ttl: Duration::from_secs(3),
            l1: None,
            invalidation_ack_timeout: Duration::from_millis(500),
        }
    }
}

/// TTL of each endpoint's entries.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub categories: Duration,
    pub search: Duration,
    pub top_products: Duration,
    pub product: Duration,
}

impl Ttls {
    pub fn uniform(ttl: Duration) -> Self {
        Ttls { categories: ttl, search: ttl, top_products: ttl, product: ttl }
    }

    pub fn for_endpoint(&self, e: Endpoint) -> Duration {
        match e {
            Endpoint::Categories => self.categories,
            Endpoint::Search => self.search,
            Endpoint::TopProducts => self.top_products,
            Endpoint::Product => self.product,
        }
    }
}

/// Counters behind `/api/stats`; reset by a flush.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CounterSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub errors: u64,
    /// hits / (hits + misses + errors); `None` before the first cacheable request.
    pub hit_rate: Option<f64>,
}

/// What priming a key did.
#[derive(Debug, Clone)]
pub enum Primed {
    /// The key was in Redis already (its value is returned).
    AlreadyCached(Bytes),
    /// Loaded from PostgreSQL and stored.
    Stored(Bytes),
    /// Loaded, but not stored (Redis unavailable, or a write changed the data meanwhile).
    NotStored(Bytes),
}

impl Primed {
    pub fn data(&self) -> &Bytes {
        match self {
            Primed::AlreadyCached(b) | Primed::Stored(b) | Primed::NotStored(b) => b,
        }
    }
}

/// Keys a write removed, for the response and the logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Invalidation {
    pub count: usize,
    pub keys: Vec<String>,
    /// False when Redis could not be reached: entries may stay until their TTL ends.
    pub complete: bool,
    /// Replicas told to drop the entries from their L1, and how many confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Announced>,
}

const LOOKUP: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
local g = redis.call('HGET', KEYS[2], ARGV[1])
if not g then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  g = ARGV[2]
end
return {0, g}
";

const FILL: &str = r"
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0
";

const BUMP_AND_UNLINK: &str = r"
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local n = 0
for i = 2, #KEYS do n = n + redis.call('UNLINK', KEYS[i]) end
return n
";

/// Keys shown in a write's response; the count is always exact.
const MAX_KEYS_LISTED: usize = 50;
const SCAN_BATCH: usize = 500;

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    /// `cache_requests_total` children, resolved once: `[endpoint][outcome]`.
    requests: [[prometheus::IntCounter; 4]; 4],
    redis: Arc<RedisClient>,
    keyspace: Keyspace,
    opts: CacheOptions,
    metrics: Metrics,
    counters: Counters,
    flights: Flights,
    l1: Option<Arc<L1>>,
    bus: Arc<Bus>,
    lookup: ::redis::Script,
    bump: ::redis::Script,
    unlock: ::redis::Script,
}

enum Lookup {
    Hit(Bytes),
    Miss { token: String },
}

/// Whether a request waits for its fill's reply (it needs to know the outcome) or only queues the command.
#[derive(Debug, Clone, Copy)]
enum FillMode {
    Await,
    Queue,
}

/// A value obtained on a miss.
struct Loaded {
    data: Bytes,
    db_time: Option<Duration>,
    stored: bool,
    /// Found in Redis after waiting for another replica's load (stampede lock).
    from_redis: bool,
    /// Answered by a concurrent request's load.
    coalesced: bool,
}

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

impl Cache {
    pub fn new(redis: Arc<RedisClient>, keyspace: Keyspace, opts: CacheOptions, metrics: Metrics) -> Self {
        let l1 = opts.l1.map(|(max, ttl)| Arc::new(L1::new(max, ttl, keyspace.clone(), metrics.clone())));
        let bus =
            Bus::new(redis.clone(), keyspace.prefix(), l1.clone(), opts.invalidation_ack_timeout, metrics.clone());
        let requests = Endpoint::ALL
            .map(|e| Outcome::ALL.map(|o| metrics.cache_requests.with_label_values(&[e.label(), o.label()])));
        Cache {
            inner: Arc::new(Inner {
                requests,
                redis,
                keyspace,
                opts,
                metrics,
                counters: Counters::default(),
                flights: Flights::default(),
                l1,
                bus,
                lookup: ::redis::Script::new(LOOKUP),
                bump: ::redis::Script::new(BUMP_AND_UNLINK),
                unlock: ::redis::Script::new(UNLOCK),
            }),
        }
    }

    /// Starts the background work (the invalidation subscription) until `shutdown`.
    pub fn start(&self, shutdown: CancellationToken) {
        tokio::spawn(self.inner.bus.clone().run(shutdown));
    }

    pub fn options(&self) -> &CacheOptions {
        &self.inner.opts
    }

    pub fn l1_stats(&self) -> Option<L1Stats> {
        self.inner.l1.as_ref().map(|l1| l1.stats())
    }

    pub fn invalidation_subscribed(&self) -> bool {
        self.inner.bus.is_subscribed()
    }

    pub fn invalidation_channel(&self) -> &str {
        self.inner.bus.channel()
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.inner.keyspace
    }

    pub fn ttls(&self) -> &Ttls {
        &self.inner.opts.ttls
    }

    pub fn redis(&self) -> &RedisClient {
        &self.inner.redis
    }

    /// Cache-aside: the entry from L1 (when on) or Redis, else `load` from PostgreSQL and store it. With
    /// `bypass`, only `load`. Redis failures never fail the request: the value is loaded and the outcome is
    /// `Error`.
    pub async fn get_or_load<T, F, Fut>(&self, key: &CacheKey, bypass: bool, load: F) -> Result<Cached>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if bypass {
            let (data, db_time) = load_json(load).await?;
            let cached =
                Cached { data, outcome: Outcome::Bypass, level: None, stored: false, redis_time: None, db_time };
            return Ok(self.record(key, cached));
        }
        let full = self.inner.keyspace.full(key);
        let l1 = self.inner.l1.as_ref().filter(|l1| l1.is_active());
        if let Some(data) = l1.and_then(|l1| l1.get(&full)) {
            let cached = Cached {
                data,
                outcome: Outcome::Hit,
                level: Some(Level::L1),
                stored: false,
                redis_time: None,
                db_time: None,
            };
            return Ok(self.record(key, cached));
        }
        let epoch = l1.map(|l1| l1.epoch());
        let started = Instant::now();
        let looked_up = self.lookup(key, &full).await;
        let redis_time = Some(started.elapsed());
        let cached = match looked_up {
            Ok(Lookup::Hit(data)) => {
                if let (Some(l1), Some(e)) = (l1, epoch) {
                    l1.insert_if_current(&full, data.clone(), e);
                }
                Cached { data, outcome: Outcome::Hit, level: Some(Level::L2), stored: false, redis_time, db_time: None }
            }
            Ok(Lookup::Miss { token }) => {
                let loaded = self.load_on_miss(key, &full, Some(&token), load).await?;
                if let (Some(l1), Some(e), true) = (l1, epoch, loaded.stored || loaded.from_redis) {
                    l1.insert_if_current(&full, loaded.data.clone(), e);
                }
                let (outcome, level) =
                    if loaded.from_redis { (Outcome::Hit, Some(Level::L2)) } else { (Outcome::Miss, None) };
                if loaded.coalesced {
                    self.inner.metrics.coalesced.with_label_values(&[key.endpoint.label()]).inc();
                }
                Cached { data: loaded.data, outcome, level, stored: loaded.stored, redis_time, db_time: loaded.db_time }
            }
            Err(_) => {
                let loaded = self.load_on_miss(key, &full, None, load).await?;
                if loaded.coalesced {
                    self.inner.metrics.coalesced.with_label_values(&[key.endpoint.label()]).inc();
                }
                Cached {
                    data: loaded.data,
                    outcome: Outcome::Error,
                    level: None,
                    stored: false,
                    redis_time,
                    db_time: loaded.db_time,
                }
            }
        };
        Ok(self.record(key, cached))
    }

    /// A miss: share a concurrent load of the same key and generation when single-flight is on, else lead.
    async fn load_on_miss<T, F, Fut>(&self, key: &CacheKey, full: &str, token: Option<&str>, load: F) -> Result<Loaded>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if !self.inner.opts.single_flight {
            return self.lead(key, full, token, load).await;
        }
        match self.inner.flights.join(full, token) {
            Join::Leader(lead) => {
                let result = self.lead(key, full, token, load).await;
                lead.finish(match &result {
                    Ok(l) => Shared::Value(l.data.clone()),
                    Err(Error::NotFound(what)) => Shared::NotFound(what.clone()),
                    Err(_) => Shared::Failed,
                });
                result
            }
            Join::Follower(rx) => match flight::follow(rx, self.inner.opts.single_flight_wait).await {
                Some(Shared::Value(data)) => {
                    Ok(Loaded { data, db_time: None, stored: false, from_redis: false, coalesced: true })
                }
                Some(Shared::NotFound(what)) => Err(Error::NotFound(what)),
                // The leader failed or is slow: ask the database ourselves.
                _ => self.load_and_fill(key, full, token, load, FillMode::Queue).await,
            },
        }
    }

    /// The one load of a key in this process; with the stampede lock, the one load across replicas.
    async fn lead<T, F, Fut>(&self, key: &CacheKey, full: &str, token: Option<&str>, load: F) -> Result<Loaded>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if !self.inner.opts.stampede_lock || token.is_none() {
            return self.load_and_fill(key, full, token, load, FillMode::Queue).await;
        }
        let lock_key = format!("{}:lock:{}", self.inner.keyspace.prefix(), key.name());
        let owner = new_token();
        let ttl_ms = self.inner.opts.stampede_lock_ttl.as_millis() as u64;
        let acquired: Result<Option<String>, _> = self
            .inner
            .redis
            .run("lock", |mut conn| {
                let (lock_key, owner) = (lock_key.clone(), owner.clone());
                async move {
                    ::redis::cmd("SET")
                        .arg(&lock_key)
                        .arg(&owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await;
        match acquired {
            Ok(Some(_)) => {
                self.inner.metrics.stampede_lock.with_label_values(&["acquired"]).inc();
                // Other replicas poll for the value while the lock is held: store it before releasing.
                let result = self.load_and_fill(key, full, token, load, FillMode::Await).await;
                let script = &self.inner.unlock;
                let _: Result<i64, _> =
                    self.inner
                        .redis
                        .run("unlock", |mut conn| async move {
                            script.key(&lock_key).arg(&owner).invoke_async(&mut conn).await
                        })
                        .await;
                result
            }
            Ok(None) => {
                // Another replica is loading: wait for its value to appear, bounded, then load ourselves.
                let deadline =
                    Instant::now() + self.inner.opts.single_flight_wait.min(self.inner.opts.stampede_lock_ttl);
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let found: Result<Option<Vec<u8>>, _> = self
                        .inner
                        .redis
                        .run(
                            "get",
                            |mut conn| async move { ::redis::cmd("GET").arg(full).query_async(&mut conn).await },
                        )
                        .await;
                    match found {
                        Ok(Some(bytes)) => {
                            self.inner.metrics.stampede_lock.with_label_values(&["waited"]).inc();
                            return Ok(Loaded {
                                data: Bytes::from(bytes),
                                db_time: None,
                                stored: false,
                                from_redis: true,
                                coalesced: false,
                            });
                        }
                        Ok(None) => continue,
                        Err(_) => break,
                    }
                }
                self.inner.metrics.stampede_lock.with_label_values(&["timeout"]).inc();
                self.load_and_fill(key, full, token, load, FillMode::Queue).await
            }
            Err(_) => self.load_and_fill(key, full, token, load, FillMode::Queue).await,
        }
    }

    async fn load_and_fill<T, F, Fut>(
        &self,
        key: &CacheKey,
        full: &str,
        token: Option<&str>,
        load: F,
        mode: FillMode,
    ) -> Result<Loaded>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let (data, db_time) = load_json(load).await?;
        let Some(token) = token else {
            return Ok(Loaded { data, db_time, stored: false, from_redis: false, coalesced: false });
        };
        let stored = match mode {
            FillMode::Await => self.fill(key, full, token, &data).await,
            FillMode::Queue => {
                self.queue_fill(key, full, token, &data).await;
                false
            }
        };
        Ok(Loaded { data, db_time, stored, from_redis: false, coalesced: false })
    }

    /// Stores the value of `key` unless it is cached already: for warming and write-through. The same
    /// generation check as a normal miss applies, and nothing is counted as a request.
    pub async fn prime<T, F, Fut>(&self, key: &CacheKey, load: F) -> Result<Primed>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let full = self.inner.keyspace.full(key);
        match self.lookup(key, &full).await {
            Ok(Lookup::Hit(data)) => Ok(Primed::AlreadyCached(data)),
            Ok(Lookup::Miss { token }) => {
                let loaded = self.load_and_fill(key, &full, Some(&token), load, FillMode::Await).await?;
                Ok(if loaded.stored { Primed::Stored(loaded.data) } else { Primed::NotStored(loaded.data) })
            }
            Err(_) => Ok(Primed::NotStored(load_json(load).await?.0)),
        }
    }

    fn record(&self, key: &CacheKey, cached: Cached) -> Cached {
        let c = &self.inner.counters;
        let counter = match cached.outcome {
            Outcome::Hit => &c.hits,
            Outcome::Miss => &c.misses,
            Outcome::Bypass => &c.bypasses,
            Outcome::Error => &c.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.inner.requests[key.endpoint as usize][cached.outcome as usize].inc();
        cached
    }

    async fn lookup(&self, key: &CacheKey, full: &str) -> Result<Lookup, CacheError> {
        let gens = self.inner.keyspace.generations();
        let field = key.scope.field();
        let fresh = new_token();
        let script = &self.inner.lookup;
        let (found, value): (i64, Vec<u8>) = self
            .inner
            .redis
            .run("lookup", |mut conn| async move {
                script.key(full).key(gens).arg(&field).arg(&fresh).invoke_async(&mut conn).await
            })
            .await?;
        Ok(if found == 1 {
            Lookup::Hit(Bytes::from(value))
        } else {
            Lookup::Miss { token: String::from_utf8_lossy(&value).into_owned() }
        })
    }

    /// The fill as one `EVAL` command (never EVALSHA, which becomes two commands, NOSCRIPT then EVAL, on a Redis
    /// that has not seen the script yet), and the TTL it gives.
    fn fill_command(&self, key: &CacheKey, full: &str, token: &str, data: &Bytes) -> (::redis::Cmd, Duration) {
        let ttl = ttl::random_jitter(self.inner.opts.ttls.for_endpoint(key.endpoint), self.inner.opts.ttl_jitter_pct);
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(FILL)
            .arg(2)
            .arg(full)
            .arg(self.inner.keyspace.generations())
            .arg(key.scope.field())
            .arg(token)
            .arg(data.as_ref())
            .arg(ttl.as_millis() as u64);
        (cmd, ttl)
    }

    /// Queues the fill without waiting for its reply. Redis runs one connection's commands in order, so any later
    /// lookup from this process sees the value, while the response does not wait a round trip for it.
    async fn queue_fill(&self, key: &CacheKey, full: &str, token: &str, data: &Bytes) {
        let (cmd, ttl) = self.fill_command(key, full, token, data);
        if self.inner.redis.send_without_reply("fill_queued", cmd).await.is_ok() {
            self.inner.metrics.ttl_seconds.observe(ttl.as_secs_f64());
        }
    }

    /// Stores the loaded value, with a jittered TTL, unless a write changed the scope's generation meanwhile.
    /// Failures are logged and counted by the Redis layer; the request has its answer already.
    async fn fill(&self, key: &CacheKey, full: &str, token: &str, data: &Bytes) -> bool {
        let (cmd, ttl) = self.fill_command(key, full, token, data);
        let stored: Result<i64, _> =
            self.inner.redis.run("fill", |mut conn| async move { cmd.query_async(&mut conn).await }).await;
        match stored {
            Ok(1) => {
                self.inner.metrics.ttl_seconds.observe(ttl.as_secs_f64());
                true
            }
            Ok(_) => {
                tracing::debug!(key = key.name(), "fill skipped: a write changed the data while it was loading");
                false
            }
            Err(_) => false,
        }
    }

    /// After a committed write: new generations for `scopes`, then remove the entries they cover
    /// (the product's own key, and with [`Scope::Catalog`] every list and aggregate of this app).
    pub async fn invalidate(&self, scopes: &[Scope]) -> Invalidation {
        // This replica first, synchronously; the others through the bus below.
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate(scopes);
        }
        self.inner.flights.forget_untokened();
        let ks = &self.inner.keyspace;
        let gens = ks.generations();
        let direct: Vec<String> = scopes
            .iter()
            .filter_map(|s| match s {
                Scope::Product(id) => Some(ks.full(&CacheKey::product(*id))),
                Scope::Catalog => None,
            })
            .collect();
        let tokens: Vec<(String, String)> = scopes.iter().map(|s| (s.field(), new_token())).collect();
        let script = &self.inner.bump;
        let bumped: Result<i64, _> = self
            .inner
            .redis
            .run("invalidate", |mut conn| async move {
                let mut inv = script.key(gens);
                for k in &direct {
                    inv.key(k);
                }
                for (field, token) in &tokens {
                    inv.arg(field).arg(token);
                }
                inv.invoke_async(&mut conn).await
            })
            .await;
        let mut result = Invalidation { complete: bumped.is_ok(), ..Default::default() };
        if let Ok(n) = bumped {
            result.count += n as usize;
            result.keys.extend(
                scopes
                    .iter()
                    .filter_map(|s| match s {
                        Scope::Product(id) => Some(CacheKey::product(*id).name().to_owned()),
                        Scope::Catalog => None,
                    })
                    .take(n as usize),
            );
        }
        // Catalog entries are found by SCAN after the token change: no stale entry can be created after it,
        // and SCAN returns every key that exists for its whole duration.
        if result.complete && scopes.contains(&Scope::Catalog) {
            match self.unlink_matching(|k| ks.is_catalog_entry(k)).await {
                Ok(removed) => {
                    result.count += removed.len();
                    result.keys.extend(removed.into_iter().map(|k| ks.short(&k).to_owned()));
                }
                Err(_) => result.complete = false,
            }
        }
        result.keys.truncate(MAX_KEYS_LISTED);
        if result.complete {
            result.replicas = self.inner.bus.announce(Some(scopes)).await;
        }
        self.inner.metrics.invalidated_keys.with_label_values(&["write"]).inc_by(result.count as u64);
        if !result.complete {
            tracing::warn!("cache invalidation incomplete: Redis unavailable; entries expire with their TTL");
        }
        result
    }

    /// Removes every key of this app (SCAN + UNLINK by prefix, never KEYS or FLUSHALL) and resets the counters.
    pub async fn flush(&self) -> Result<usize, CacheError> {
        let removed = self.unlink_matching(|_| true).await?;
        self.reset_counters();
        if let Some(l1) = &self.inner.l1 {
            l1.reset(l1.is_active());
        }
        self.inner.bus.announce(None).await;
        self.inner.metrics.invalidated_keys.with_label_values(&["flush"]).inc_by(removed.len() as u64);
        Ok(removed.len())
    }

    pub fn reset_counters(&self) {
        let c = &self.inner.counters;
        for a in [&c.hits, &c.misses, &c.bypasses, &c.errors] {
            a.store(0, Ordering::Relaxed);
        }
    }

    pub fn counters(&self) -> CounterSnapshot {
        let c = &self.inner.counters;
        let hits = c.hits.load(Ordering::Relaxed);
        let misses = c.misses.load(Ordering::Relaxed);
        let errors = c.errors.load(Ordering::Relaxed);
        let lookups = hits + misses + errors;
        CounterSnapshot {
            hits,
            misses,
            bypasses: c.bypasses.load(Ordering::Relaxed),
            errors,
            hit_rate: (lookups > 0).then(|| hits as f64 / lookups as f64),
        }
    }

    /// Every key of this app, by SCAN.
    pub async fn scan_keys(&self) -> Result<Vec<String>, CacheError> {
        Ok(self.scan_matching(&self.inner.keyspace.all_pattern(), usize::MAX).await?.0)
    }

    /// Keys matching a full SCAN pattern, at most `limit` of them; `true` when more matched. Keys outside
    /// this app's prefix are never returned, whatever the pattern.
    pub async fn scan_matching(&self, pattern: &str, limit: usize) -> Result<(Vec<String>, bool), CacheError> {
        let prefix = format!("{}:", self.inner.keyspace.prefix());
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let pattern = &pattern;
            let (next, batch): (u64, Vec<String>) = self
                .inner
                .redis
                .run("scan", |mut conn| async move {
                    ::redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            keys.extend(batch.into_iter().filter(|k| k.starts_with(&prefix)));
            cursor = next;
            // SCAN may return a key more than once.
            keys.sort_unstable();
            keys.dedup();
            if keys.len() > limit {
                keys.truncate(limit);
                return Ok((keys, true));
            }
            if cursor == 0 {
                return Ok((keys, false));
            }
        }
    }

    async fn unlink_matching(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, CacheError> {
        let keys: Vec<String> = self.scan_keys().await?.into_iter().filter(|k| keep(k)).collect();
        self.unlink(&keys).await?;
        Ok(keys)
    }

    /// Removes keys matching a full SCAN pattern (admin), then tells every replica to empty its L1.
    pub async fn unlink_pattern(&self, pattern: &str) -> Result<usize, CacheError> {
        let (keys, _) = self.scan_matching(pattern, usize::MAX).await?;
        self.unlink(&keys).await?;
        if let Some(l1) = &self.inner.l1 {
            l1.reset(l1.is_active());
        }
        self.inner.bus.announce(None).await;
        self.inner.metrics.invalidated_keys.with_label_values(&["admin"]).inc_by(keys.len() as u64);
        Ok(keys.len())
    }

    /// `TTL` of each key, in one round trip (-2: gone, -1: no expiry).
    pub async fn ttls_of(&self, keys: &[String]) -> Result<Vec<i64>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .redis
            .run("ttl", |mut conn| async move {
                let mut pipe = ::redis::pipe();
                for k in keys {
                    pipe.cmd("TTL").arg(k);
                }
                pipe.query_async(&mut conn).await
            })
            .await
    }

    async fn unlink(&self, keys: &[String]) -> Result<(), CacheError> {
        for chunk in keys.chunks(SCAN_BATCH) {
            let _: i64 = self
                .inner
                .redis
                .run("unlink", |mut conn| async move { ::redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await })
                .await?;
        }
        Ok(())
    }

    /// Remaining time to live of a key (`TTL`): `None` when the key does not exist.
    pub async fn ttl(&self, key: &CacheKey) -> Result<Option<i64>, CacheError> {
        let full = self.inner.keyspace.full(key);
        let ttl: i64 = self
            .inner
            .redis
            .run("ttl", |mut conn| async move { ::redis::cmd("TTL").arg(&full).query_async(&mut conn).await })
            .await?;
        Ok((ttl >= -1).then_some(ttl))
    }

    /// Selected fields of `INFO memory stats server`.
    pub async fn info(&self) -> Result<Vec<(String, String)>, CacheError> {
        let text: String = self
            .inner
            .redis
            .run("info", |mut conn| async move {
                ::redis::cmd("INFO").arg("memory").arg("stats").arg("server").query_async(&mut conn).await
            })
            .await?;
        Ok(parse_info(&text))
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        let _: String = self
            .inner
            .redis
            .run("ping", |mut conn| async move { ::redis::cmd("PING").query_async(&mut conn).await })
            .await?;
        Ok(())
    }
}

async fn load_json<T, F, Fut>(load: F) -> Result<(Bytes, Option<Duration>)>
where
    T: Serialize,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let value = load().await?;
    let db_time = started.elapsed();
    // Serializing plain data structures to a Vec cannot fail.
    let data = serde_json::to_vec(&value).unwrap_or_default();
    Ok((Bytes::from(data), Some(db_time)))
}

fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `INFO` text → (field, value) pairs, comments and blank lines skipped.
pub fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_is_parsed() {
        let info = "# Memory\r\nused_memory:1024\r\nmaxmemory_policy:allkeys-lru\r\n\r\n# Stats\r\nevicted_keys:3\r\n";
        let pairs = parse_info(info);
        assert_eq!(pairs.len(), 3);
        assert!(pairs.contains(&("maxmemory_policy".into(), "allkeys-lru".into())));
        assert!(pairs.contains(&("evicted_keys".into(), "3".into())));
    }

    #[test]
    fn outcomes_map_to_headers_sources_and_labels() {
        assert_eq!(Outcome::Hit.header(), "HIT");
        assert_eq!(Outcome::Hit.source(), "cache");
        assert_eq!(Outcome::Miss.source(), "database");
        assert_eq!(Outcome::Bypass.header(), "BYPASS");
        assert_eq!(Outcome::Error.label(), "error");
        assert_eq!(Outcome::Error.header(), "MISS");
    }

    #[test]
    fn tokens_are_random() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 16);
    }
}
