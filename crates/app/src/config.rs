//! Every setting of the service: one clap struct, each field readable from the environment, each default
//! good for a laptop (`make run` sets the two URLs).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cache-demo",
    version,
    about = "Redis cache-aside demo: a product catalogue in PostgreSQL behind Redis"
)]
pub struct Config {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/cache_demo",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Redis connection URL (`redis://` or `rediss://`, password as `redis://:PASSWORD@host:port/`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/", hide_env_values = true)]
    pub redis_url: String,

    /// Redis password, if not part of REDIS_URL (the Kubernetes Secret provides it this way).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8000")]
    pub listen_addr: SocketAddr,

    /// Prefix of every Redis key this app writes (`<prefix>:categories:stats`).
    #[arg(long, env = "CACHE_PREFIX", default_value = "cache-demo", value_parser = parse_prefix)]
    pub cache_prefix: String,

    /// Default time to live of cached entries, in seconds.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cache_ttl_secs: u64,

    /// TTL of `categories:stats` (defaults to CACHE_TTL_SECS).
    #[arg(long, env = "CACHE_TTL_CATEGORIES_SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cache_ttl_categories_secs: Option<u64>,

    /// TTL of `products:search:*` entries (defaults to CACHE_TTL_SECS).
    #[arg(long, env = "CACHE_TTL_SEARCH_SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cache_ttl_search_secs: Option<u64>,

    /// TTL of `products:top:*` entries (defaults to CACHE_TTL_SECS).
    #[arg(long, env = "CACHE_TTL_TOP_SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cache_ttl_top_secs: Option<u64>,

    /// TTL of `product:<id>` entries (defaults to CACHE_TTL_SECS).
    #[arg(long, env = "CACHE_TTL_PRODUCT_SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cache_ttl_product_secs: Option<u64>,

    /// Artificial delay added to every database query, in milliseconds (0 = off). Makes the gap visible in a demo.
    #[arg(long, env = "DB_DELAY_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub db_delay_ms: u64,

    /// Maximum PostgreSQL connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,

    /// How long a request waits for a PostgreSQL connection before answering 503, in milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_acquire_timeout_ms: u64,

    /// Upper bound of one PostgreSQL query, in milliseconds.
    #[arg(long, env = "DB_QUERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_query_timeout_ms: u64,

    /// Upper bound of one Redis command; past it the request is answered from PostgreSQL.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Grace period for in-flight requests after SIGTERM/Ctrl-C, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn db_delay(&self) -> Duration {
        Duration::from_millis(self.db_delay_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn db_query_timeout(&self) -> Duration {
        Duration::from_millis(self.db_query_timeout_ms)
    }

    /// Defaults for tests and embedding: the given URLs, everything else as documented.
    pub fn for_urls(database_url: &str, redis_url: &str) -> Self {
        Config::parse_from(["cache-demo", "--database-url", database_url, "--redis-url", redis_url])
    }
}

/// Prefixes are typed in `redis-cli` and used in SCAN patterns: keep them to characters that need no quoting
/// and cannot act as glob syntax.
fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok { Ok(s.to_owned()) } else { Err("use 1-64 characters from [A-Za-z0-9._-]".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::for_urls("postgres://x/y", "redis://z/");
        assert_eq!(c.cache_ttl_secs, 60);
        assert_eq!(c.db_delay_ms, 0);
        assert_eq!(c.cache_prefix, "cache-demo");
        assert_eq!(c.listen_addr.port(), 8000);
    }

    #[test]
    fn prefix_rejects_glob_characters() {
        assert!(parse_prefix("cache-demo").is_ok());
        assert!(parse_prefix("a*").is_err());
        assert!(parse_prefix("a:b").is_err());
        assert!(parse_prefix("").is_err());
    }

    #[test]
    fn ttl_zero_is_rejected() {
        let r = Config::try_parse_from(["cache-demo", "--cache-ttl-secs", "0"]);
        assert!(r.is_err());
    }
}
