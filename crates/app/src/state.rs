//! What every handler gets: configuration, the database, the cache and the metrics, all cheap to clone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::cache::{BreakerConfig, ByEndpoint, Cache, CacheOptions, Keyspace, L1Options, RedisClient};
use crate::config::Config;
use crate::db::{Db, DbOptions};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::recent::Recent;

/// Cloned for every request by axum's `State`: one reference count, not a copy of every field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) db: Db,
    pub(crate) cache: Cache,
    pub(crate) metrics: Metrics,
    pub(crate) recent: Recent,
    /// Every replica's figures, exchanged through Redis, and the timeline.
    pub(crate) fleet: Fleet,
    /// The dashboard's background traffic.
    pub(crate) traffic: crate::labs::Traffic,
    /// Limits on heavy work (load tests, reads that bypass the cache).
    pub(crate) admission: Admission,
    pub(crate) started: Instant,
    /// Which path the dashboard's next comparison times first: they take turns.
    pub(crate) compare_cache_first: std::sync::atomic::AtomicBool,
    /// Cancelled when the server stops; every background task watches it.
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    /// Builds the state without waiting for PostgreSQL or Redis: both connect lazily and reconnect by themselves.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let db = Db::connect_lazy(
            &DbOptions {
                url: config.database_url.clone(),
                pool_size: config.db_pool_size,
                acquire_timeout: config.db_acquire_timeout(),
                query_timeout: config.db_query_timeout(),
                lock_timeout: Duration::from_millis(config.db_lock_timeout_ms),
                delay: config.db_delay(),
            },
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("invalid DATABASE_URL: {e}"))?;
        let breaker = BreakerConfig {
            enabled: config.breaker_enabled,
            failures: config.breaker_failures,
            cooldown: Duration::from_millis(config.breaker_cooldown_ms),
        };
        let redis = RedisClient::connect(
            &config.redis_url,
            config.redis_password.as_deref(),
            config.redis_timeout(),
            breaker,
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("invalid REDIS_URL: {e}"))?;
        let opts = CacheOptions {
            ttls: ByEndpoint::new(|e| config.cache_ttl(e)),
            ttl_jitter_pct: config.cache_ttl_jitter_pct,
            single_flight: config.single_flight,
            single_flight_wait: Duration::from_millis(config.single_flight_wait_ms),
            stampede_lock: config.stampede_lock,
            stampede_lock_ttl: Duration::from_millis(config.stampede_lock_ttl_ms),
            l1: config.l1_enabled.then(|| L1Options {
                max_entries: config.l1_max_entries,
                ttl: Duration::from_millis(config.l1_ttl_ms),
            }),
            invalidation_ack_timeout: Duration::from_millis(config.invalidation_ack_timeout_ms),
            max_owed_scopes: config.invalidation_max_owed as usize,
        };
        let cache = Cache::new(redis, Keyspace::new(&config.cache_prefix), opts, metrics.clone());
        let admission = Admission::new(config.db_pool_size, config.db_acquire_timeout());
        let shutdown = CancellationToken::new();
        cache.start(shutdown.clone());
        let replica = config.replica();
        let state = AppState(Arc::new(Shared {
            config: Arc::new(config),
            db,
            cache,
            metrics,
            recent: Recent::new(&replica),
            fleet: Fleet::new(&replica),
            traffic: crate::labs::Traffic::default(),
            admission,
            started: Instant::now(),
            compare_cache_first: std::sync::atomic::AtomicBool::new(false),
            shutdown: shutdown.clone(),
        }));
        tokio::spawn(Fleet::run(state.clone(), shutdown));
        Ok(state)
    }
}

/// What embedding code (the tests, the bench) may ask of a running app.
impl AppState {
    /// Whether Redis answers a `PING` now.
    pub async fn redis_reachable(&self) -> bool {
        self.cache.ping().await.is_ok()
    }

    /// Whether this replica hears cross-instance invalidations (its L1 is used only then).
    pub fn invalidation_subscribed(&self) -> bool {
        self.cache.invalidation_subscribed()
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
