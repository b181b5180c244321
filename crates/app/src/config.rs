//! Every setting of the service: one clap struct, each field readable from the environment, each default
//! good for a laptop (`make run` sets the two URLs).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::cache::Endpoint;

#[derive(Clone, Parser)]
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

    /// Time a client has to send a request's headers (also how long an idle keep-alive connection stays open),
    /// in milliseconds; past it the connection is closed.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub http_header_read_timeout_ms: u64,

    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 2_048, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub http_max_connections: u32,

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

    /// This replica's name on the dashboard (which replica answered, its counters). Defaults to `HOSTNAME`, the
    /// pod's name in Kubernetes, else a random id.
    #[arg(long, env = "REPLICA_NAME", value_parser = replica_name)]
    pub replica_name: Option<String>,

    /// Maximum PostgreSQL connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,

    /// How long a request waits for a PostgreSQL connection before answering 503, in milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_acquire_timeout_ms: u64,

    /// Upper bound of one PostgreSQL query, in milliseconds.
    #[arg(long, env = "DB_QUERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_query_timeout_ms: u64,

    /// PostgreSQL's `lock_timeout` on the app's connections, in milliseconds: a write waiting this long for a
    /// row lock gives up (503) instead of holding a connection.
    #[arg(long, env = "DB_LOCK_TIMEOUT_MS", default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub db_lock_timeout_ms: u64,

    /// Upper bound of one Redis command; past it the request is answered from PostgreSQL.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// TTL jitter: every TTL is spread by up to ± this percentage so keys written together expire apart (0 = off).
    #[arg(long, env = "CACHE_TTL_JITTER_PCT", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=50))]
    pub cache_ttl_jitter_pct: u8,

    /// Stampede protection: concurrent misses of one key in this process share one database query.
    #[arg(long, env = "SINGLE_FLIGHT", default_value_t = true, action = clap::ArgAction::Set)]
    pub single_flight: bool,

    /// How long a request waits for another request's load of the same key before querying itself.
    #[arg(long, env = "SINGLE_FLIGHT_WAIT_MS", default_value_t = 2_000)]
    pub single_flight_wait_ms: u64,

    /// Stampede protection across replicas: a short Redis lock (`SET NX PX`) per key being loaded.
    #[arg(long, env = "STAMPEDE_LOCK", default_value_t = false, action = clap::ArgAction::Set)]
    pub stampede_lock: bool,

    /// Expiry of the stampede lock, in milliseconds (bounds how long other replicas wait for it).
    #[arg(long, env = "STAMPEDE_LOCK_TTL_MS", default_value_t = 3_000)]
    pub stampede_lock_ttl_ms: u64,

    /// Circuit breaker for Redis: after repeated failures stop calling Redis for a cool-down.
    #[arg(long, env = "BREAKER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub breaker_enabled: bool,

    /// Consecutive Redis failures (errors or timeouts) that open the breaker.
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_failures: u32,

    /// How long the breaker stays open before a probe is let through, in milliseconds.
    #[arg(long, env = "BREAKER_COOLDOWN_MS", default_value_t = 3_000)]
    pub breaker_cooldown_ms: u64,

    /// Two-level cache: an in-process LRU in front of Redis (off by default: the demo shows Redis).
    #[arg(long, env = "L1_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub l1_enabled: bool,

    /// Time to live of L1 entries, in milliseconds.
    #[arg(long, env = "L1_TTL_MS", default_value_t = 5_000)]
    pub l1_ttl_ms: u64,

    /// Maximum number of L1 entries.
    #[arg(long, env = "L1_MAX_ENTRIES", default_value_t = 10_000)]
    pub l1_max_entries: u64,

    /// How long a write waits for other replicas to confirm they dropped the entry from their L1.
    #[arg(long, env = "INVALIDATION_ACK_TIMEOUT_MS", default_value_t = 500)]
    pub invalidation_ack_timeout_ms: u64,

    /// Products whose invalidation a replica keeps owing while Redis cannot take it; past this many, it owes
    /// everything instead (every token and entry is removed once Redis is back), so the set stays bounded.
    #[arg(long, env = "INVALIDATION_MAX_OWED", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub invalidation_max_owed: u32,

    /// Write-through: after an update, store the new product in the cache instead of only deleting it.
    #[arg(long, env = "WRITE_THROUGH", default_value_t = false, action = clap::ArgAction::Set)]
    pub write_through: bool,

    /// Warm the cache (category stats, top products and their pages) at start-up.
    #[arg(long, env = "WARM_ON_START", default_value_t = false, action = clap::ArgAction::Set)]
    pub warm_on_start: bool,

    /// Warm the cache every this many seconds (0 = never).
    #[arg(long, env = "WARM_INTERVAL_SECS", default_value_t = 0)]
    pub warm_interval_secs: u64,

    /// How many top products warming loads.
    #[arg(long, env = "WARM_TOP_N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub warm_top_n: u32,

    /// Bearer token required, when set, by every write: product changes, the flush, warming and the admin routes
    /// (`Authorization: Bearer <token>`). Reads stay open.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

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
    pub fn http_header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_read_timeout_ms)
    }

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

    /// The admin token, if one is set (an empty value counts as none).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|t| !t.is_empty())
    }

    /// Whether anyone who can reach the listen address may write: no token, and not bound to loopback only.
    pub fn writes_open_to_network(&self) -> bool {
        self.admin_token().is_none() && !self.listen_addr.ip().is_loopback()
    }

    /// TTL of an endpoint's entries: its own setting, else `CACHE_TTL_SECS`.
    pub fn cache_ttl(&self, endpoint: Endpoint) -> Duration {
        let own = match endpoint {
            Endpoint::Categories => self.cache_ttl_categories_secs,
            Endpoint::Search => self.cache_ttl_search_secs,
            Endpoint::TopProducts => self.cache_ttl_top_secs,
            Endpoint::Product => self.cache_ttl_product_secs,
        };
        Duration::from_secs(own.unwrap_or(self.cache_ttl_secs))
    }

    /// Defaults for tests and embedding: the given URLs, everything else as documented.
    pub fn for_urls(database_url: &str, redis_url: &str) -> Self {
        Config::parse_from(["cache-demo", "--database-url", database_url, "--redis-url", redis_url])
    }
}

/// A replica name: what a pod name may hold, so it reads well on the page and in Redis.
fn replica_name(raw: &str) -> Result<String, String> {
    let ok = (1..=63).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok { Ok(raw.to_owned()) } else { Err("1 to 63 letters, digits, '-', '.' or '_'".into()) }
}

impl Config {
    /// [`Config::replica_name`], else `HOSTNAME` when it is a valid name, else a random id.
    pub fn replica(&self) -> String {
        self.replica_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().and_then(|h| replica_name(&h).ok()))
            .unwrap_or_else(|| format!("replica-{:06x}", rand::random::<u32>() & 0xff_ffff))
    }
}

const REDACTED: &str = "<redacted>";

/// Written by hand so that logging the configuration never prints a password, a URL's credentials or the admin
/// token; the destructuring makes a new field a compile error here until it is listed.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            database_url,
            redis_url,
            redis_password,
            listen_addr,
            http_header_read_timeout_ms,
            http_max_connections,
            cache_prefix,
            cache_ttl_secs,
            cache_ttl_categories_secs,
            cache_ttl_search_secs,
            cache_ttl_top_secs,
            cache_ttl_product_secs,
            db_delay_ms,
            replica_name,
            db_pool_size,
            db_acquire_timeout_ms,
            db_query_timeout_ms,
            db_lock_timeout_ms,
            redis_timeout_ms,
            cache_ttl_jitter_pct,
            single_flight,
            single_flight_wait_ms,
            stampede_lock,
            stampede_lock_ttl_ms,
            breaker_enabled,
            breaker_failures,
            breaker_cooldown_ms,
            l1_enabled,
            l1_ttl_ms,
            l1_max_entries,
            invalidation_ack_timeout_ms,
            invalidation_max_owed,
            write_through,
            warm_on_start,
            warm_interval_secs,
            warm_top_n,
            admin_token,
            log_format,
            shutdown_grace_secs,
        } = self;
        f.debug_struct("Config")
            .field("database_url", &redact_url(database_url))
            .field("redis_url", &redact_url(redis_url))
            .field("redis_password", &redis_password.as_ref().map(|_| REDACTED))
            .field("listen_addr", listen_addr)
            .field("http_header_read_timeout_ms", http_header_read_timeout_ms)
            .field("http_max_connections", http_max_connections)
            .field("cache_prefix", cache_prefix)
            .field("cache_ttl_secs", cache_ttl_secs)
            .field("cache_ttl_categories_secs", cache_ttl_categories_secs)
            .field("cache_ttl_search_secs", cache_ttl_search_secs)
            .field("cache_ttl_top_secs", cache_ttl_top_secs)
            .field("cache_ttl_product_secs", cache_ttl_product_secs)
            .field("db_delay_ms", db_delay_ms)
            .field("replica_name", replica_name)
            .field("db_pool_size", db_pool_size)
            .field("db_acquire_timeout_ms", db_acquire_timeout_ms)
            .field("db_query_timeout_ms", db_query_timeout_ms)
            .field("db_lock_timeout_ms", db_lock_timeout_ms)
            .field("redis_timeout_ms", redis_timeout_ms)
            .field("cache_ttl_jitter_pct", cache_ttl_jitter_pct)
            .field("single_flight", single_flight)
            .field("single_flight_wait_ms", single_flight_wait_ms)
            .field("stampede_lock", stampede_lock)
            .field("stampede_lock_ttl_ms", stampede_lock_ttl_ms)
            .field("breaker_enabled", breaker_enabled)
            .field("breaker_failures", breaker_failures)
            .field("breaker_cooldown_ms", breaker_cooldown_ms)
            .field("l1_enabled", l1_enabled)
            .field("l1_ttl_ms", l1_ttl_ms)
            .field("l1_max_entries", l1_max_entries)
            .field("invalidation_ack_timeout_ms", invalidation_ack_timeout_ms)
            .field("invalidation_max_owed", invalidation_max_owed)
            .field("write_through", write_through)
            .field("warm_on_start", warm_on_start)
            .field("warm_interval_secs", warm_interval_secs)
            .field("warm_top_n", warm_top_n)
            .field("admin_token", &admin_token.as_ref().map(|_| REDACTED))
            .field("log_format", log_format)
            .field("shutdown_grace_secs", shutdown_grace_secs)
            .finish()
    }
}

/// A URL with its user information replaced: `postgres://<redacted>@host/db`. Not a URL parser: everything
/// between `://` and the last `@` before the path is credentials.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}{}", &rest[at..]),
        None => url.to_owned(),
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
    fn writes_are_open_only_without_a_token_off_loopback() {
        let mut c = Config::for_urls("postgres://x/y", "redis://z/");
        assert!(c.writes_open_to_network(), "0.0.0.0 without a token");
        c.admin_token = Some(String::new());
        assert!(c.writes_open_to_network(), "an empty token is no token");
        c.admin_token = Some("t".into());
        assert!(!c.writes_open_to_network());
        c.admin_token = None;
        c.listen_addr = "127.0.0.1:8000".parse().expect("addr");
        assert!(!c.writes_open_to_network());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let mut c = Config::for_urls("postgres://app:pg-secret@db:5432/x", "rediss://:redis-secret@cache:6380/0");
        c.redis_password = Some("other-secret".into());
        c.admin_token = Some("token-secret".into());
        let shown = format!("{c:?}");
        for secret in ["pg-secret", "redis-secret", "other-secret", "token-secret", "app:"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://<redacted>@db:5432/x"), "{shown}");
        assert!(shown.contains("cache_ttl_secs: 60"), "{shown}");
        assert_eq!(redact_url("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }

    #[test]
    fn ttl_zero_is_rejected() {
        let r = Config::try_parse_from(["cache-demo", "--cache-ttl-secs", "0"]);
        assert!(r.is_err());
    }
}
