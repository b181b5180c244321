//! What every handler gets: configuration, the database, the cache and the metrics, all cheap to clone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{Cache, Keyspace, RedisClient, Ttls};
use crate::config::Config;
use crate::db::{Db, DbOptions};
use crate::metrics::Metrics;
use crate::recent::Recent;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub cache: Cache,
    pub metrics: Metrics,
    pub recent: Recent,
    pub started: Instant,
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
                delay: config.db_delay(),
            },
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("invalid DATABASE_URL: {e}"))?;
        let redis = RedisClient::connect(
            &config.redis_url,
            config.redis_password.as_deref(),
            config.redis_timeout(),
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("invalid REDIS_URL: {e}"))?;
        let secs = |o: Option<u64>| Duration::from_secs(o.unwrap_or(config.cache_ttl_secs));
        let ttls = Ttls {
            categories: secs(config.cache_ttl_categories_secs),
            search: secs(config.cache_ttl_search_secs),
            top_products: secs(config.cache_ttl_top_secs),
            product: secs(config.cache_ttl_product_secs),
        };
        let cache = Cache::new(redis, Keyspace::new(&config.cache_prefix), ttls, metrics.clone());
        Ok(AppState {
            config: Arc::new(config),
            db,
            cache,
            metrics,
            recent: Recent::default(),
            started: Instant::now(),
        })
    }
}
