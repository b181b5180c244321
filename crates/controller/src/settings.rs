//! What a deployment of cache-demo is made of: every option `up`, `render` and `status` take, their defaults,
//! and the fixed names users type (`svc/cache-demo-app`, `deploy/redis`). The object builders read nothing else.

use std::fmt;

/// The namespace everything lives in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "redis-demo";
/// The app image `make image` builds.
pub const DEFAULT_IMAGE: &str = "cache-demo-app:latest";
pub const DEFAULT_POSTGRES_IMAGE: &str = "postgres:17-alpine";
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7.4-alpine";
/// Redis' own metrics for Prometheus, as a sidecar of the Redis pod.
pub const DEFAULT_REDIS_EXPORTER_IMAGE: &str = "oliver006/redis_exporter:v1.62.0";
pub const DEFAULT_NODE_PORT: i32 = 30080;
pub const DEFAULT_MAXMEMORY: &str = "64mb";
pub const DEFAULT_POLICY: &str = "allkeys-lru";
pub const DEFAULT_TTL_SECS: u64 = 60;
pub const DEFAULT_PVC_SIZE: &str = "1Gi";

/// Names users type or scripts rely on; they never change with the options.
pub mod names {
    pub const APP: &str = "cache-demo-app";
    pub const POSTGRES: &str = "postgres";
    pub const REDIS: &str = "redis";
    /// PostgreSQL and Redis passwords and the app's admin token.
    pub const SECRET: &str = "cache-demo-credentials";
    /// `init.sql`, mounted into PostgreSQL's `/docker-entrypoint-initdb.d`.
    pub const INIT_SQL: &str = "postgres-init-sql";
    pub const POSTGRES_DATA: &str = "postgres-data";
    pub const POSTGRES_POLICY: &str = "postgres-allow-app";
    pub const REDIS_POLICY: &str = "redis-allow-app";
    /// The value of `app.kubernetes.io/part-of` and `app.kubernetes.io/instance`.
    pub const PART_OF: &str = "cache-demo";
    /// Field manager of every server-side apply, and `app.kubernetes.io/managed-by`.
    pub const FIELD_MANAGER: &str = "cache-demo-ctl";
    pub const DATABASE: &str = "cache_demo";
    pub const DATABASE_USER: &str = "postgres";
    /// The app's PostgreSQL role and Redis user: only the rights it needs (`least-privilege/`).
    pub const APP_DATABASE_USER: &str = "cache_demo_app";
    pub const APP_REDIS_USER: &str = "cache-demo";
}

/// Keys of the Secret.
pub mod secret_keys {
    pub const POSTGRES_PASSWORD: &str = "postgres-password";
    pub const REDIS_PASSWORD: &str = "redis-password";
    pub const ADMIN_TOKEN: &str = "admin-token";
    /// The app's own PostgreSQL role (`least-privilege/app-role.sql`).
    pub const APP_DB_PASSWORD: &str = "app-db-password";
    /// The app's own Redis ACL user (`least-privilege/redis-acl.txt`).
    pub const APP_REDIS_PASSWORD: &str = "app-redis-password";
    pub const ALL: [&str; 5] = [POSTGRES_PASSWORD, REDIS_PASSWORD, ADMIN_TOKEN, APP_DB_PASSWORD, APP_REDIS_PASSWORD];
}

/// Redis eviction policies (`maxmemory-policy`).
pub const REDIS_POLICIES: [&str; 8] = [
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// Where PostgreSQL keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresStorage {
    /// Gone with the pod: the demo reseeds itself from `init.sql` on every start.
    EmptyDir,
    /// A PersistentVolumeClaim of this size (`1Gi`), kept across pod restarts until `down`.
    Pvc { size: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub namespace: String,
    pub image: String,
    /// The ID of the image just built (`sha256:...`), written into the app's pod template: a rebuilt image rolls
    /// the Deployment, the same image changes nothing. None for an image the cluster pulls by reference.
    pub image_id: Option<String>,
    /// `IfNotPresent`: uses an image built into the cluster's runtime, pulls one from a registry otherwise.
    pub image_pull_policy: String,
    pub replicas: i32,
    pub postgres_image: String,
    pub redis_image: String,
    /// Run redis_exporter beside Redis (port 9121, scrape annotations on the pod).
    pub redis_exporter: bool,
    pub redis_exporter_image: String,
    /// Redis `maxmemory` in Redis' own notation (`64mb`, `1gb`).
    pub redis_maxmemory: String,
    pub redis_policy: String,
    pub cache_ttl_secs: u64,
    pub db_delay_ms: u64,
    pub node_port: i32,
    pub postgres_storage: PostgresStorage,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: DEFAULT_NAMESPACE.into(),
            image: DEFAULT_IMAGE.into(),
            image_id: None,
            image_pull_policy: "IfNotPresent".into(),
            replicas: 1,
            postgres_image: DEFAULT_POSTGRES_IMAGE.into(),
            redis_image: DEFAULT_REDIS_IMAGE.into(),
            redis_exporter: true,
            redis_exporter_image: DEFAULT_REDIS_EXPORTER_IMAGE.into(),
            redis_maxmemory: DEFAULT_MAXMEMORY.into(),
            redis_policy: DEFAULT_POLICY.into(),
            cache_ttl_secs: DEFAULT_TTL_SECS,
            db_delay_ms: 0,
            node_port: DEFAULT_NODE_PORT,
            postgres_storage: PostgresStorage::EmptyDir,
        }
    }
}

/// An option with a value the cluster (or Redis) would reject later, caught before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {option} {value:?}: {expected}")]
pub struct InvalidSetting {
    pub option: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl Settings {
    /// Checks every option; builders may then rely on them.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |option, value: &dyn fmt::Display, expected| {
            Err(InvalidSetting { option, value: value.to_string(), expected })
        };
        if !is_dns_label(&self.namespace) {
            return bad("namespace", &self.namespace, "a DNS label: lower-case letters, digits and '-', at most 63");
        }
        for (option, image) in [
            ("image", &self.image),
            ("postgres image", &self.postgres_image),
            ("redis image", &self.redis_image),
            ("redis exporter image", &self.redis_exporter_image),
        ] {
            if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
                return bad(option, image, "an image reference such as cache-demo-app:latest");
            }
        }
        if let Some(id) = &self.image_id
            && !is_image_id(id)
        {
            return bad(
                "image ID",
                id,
                "a content digest such as sha256:0123abcd... (as `docker image inspect` prints)",
            );
        }
        if !["Always", "IfNotPresent", "Never"].contains(&self.image_pull_policy.as_str()) {
            return bad("image pull policy", &self.image_pull_policy, "Always, IfNotPresent or Never");
        }
        if !(0..=20).contains(&self.replicas) {
            return bad("replicas", &self.replicas, "0 to 20");
        }
        if redis_memory_bytes(&self.redis_maxmemory).is_none_or(|b| b < 1024 * 1024) {
            return bad("redis maxmemory", &self.redis_maxmemory, "a size in Redis notation, 1mb or more (64mb, 1gb)");
        }
        if !REDIS_POLICIES.contains(&self.redis_policy.as_str()) {
            return bad("redis maxmemory policy", &self.redis_policy, "one of Redis' maxmemory-policy values");
        }
        if !(1..=86_400).contains(&self.cache_ttl_secs) {
            return bad("cache TTL", &self.cache_ttl_secs, "1 to 86400 seconds");
        }
        if self.db_delay_ms > 10_000 {
            return bad("database delay", &self.db_delay_ms, "0 to 10000 ms");
        }
        if !(30_000..=32_767).contains(&self.node_port) {
            return bad("node port", &self.node_port, "30000 to 32767 (the cluster's NodePort range)");
        }
        if let PostgresStorage::Pvc { size } = &self.postgres_storage
            && !is_quantity(size)
        {
            return bad("PVC size", size, "a Kubernetes quantity such as 1Gi");
        }
        Ok(())
    }

    /// Memory limit of the Redis container: twice `maxmemory` (Redis' own overhead, fragmentation, and the
    /// copy-on-write headroom a replica sync would need), at least 128 MiB.
    pub fn redis_memory_limit_mib(&self) -> u64 {
        let bytes = redis_memory_bytes(&self.redis_maxmemory).unwrap_or(64 * 1024 * 1024);
        bytes.saturating_mul(2).div_ceil(1024 * 1024).max(128)
    }
}

/// Bytes of a Redis memory size: `k`/`m`/`g` are powers of 1000, `kb`/`mb`/`gb` powers of 1024, case-insensitive.
pub fn redis_memory_bytes(value: &str) -> Option<u64> {
    let lower = value.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// `algorithm:hex`, the form image IDs and digests take.
pub fn is_image_id(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else { return false };
    !algorithm.is_empty()
        && algorithm.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && (12..=128).contains(&hex.len())
        && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A storage quantity as PVCs take it: digits and a binary or decimal suffix.
fn is_quantity(s: &str) -> bool {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    !number.is_empty()
        && number.parse::<u64>().is_ok_and(|n| n > 0)
        && ["", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_documentation() {
        let s = Settings::default();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.namespace, "redis-demo");
        assert_eq!(s.node_port, 30080);
        assert_eq!(s.redis_maxmemory, "64mb");
        assert_eq!(s.redis_policy, "allkeys-lru");
        assert_eq!(s.redis_memory_limit_mib(), 128);
    }

    #[test]
    fn redis_sizes_follow_redis_units() {
        assert_eq!(redis_memory_bytes("64mb"), Some(64 << 20));
        assert_eq!(redis_memory_bytes("64MB"), Some(64 << 20));
        assert_eq!(redis_memory_bytes("1g"), Some(1_000_000_000));
        assert_eq!(redis_memory_bytes("1048576"), Some(1 << 20));
        assert_eq!(redis_memory_bytes("64 mb"), None);
        assert_eq!(redis_memory_bytes("mb"), None);
        assert_eq!(redis_memory_bytes("64tb"), None);
    }

    #[test]
    fn redis_limit_grows_with_maxmemory() {
        let s = Settings { redis_maxmemory: "256mb".into(), ..Settings::default() };
        assert_eq!(s.redis_memory_limit_mib(), 512);
        let huge = Settings { redis_maxmemory: "9999999999gb".into(), ..Settings::default() };
        assert_eq!(huge.redis_memory_limit_mib(), u64::MAX.div_ceil(1024 * 1024), "saturates instead of overflowing");
    }

    #[test]
    fn bad_options_are_named() {
        let cases = [
            Settings { node_port: 8000, ..Settings::default() },
            Settings { namespace: "Redis_Demo".into(), ..Settings::default() },
            Settings { redis_policy: "lru".into(), ..Settings::default() },
            Settings { redis_maxmemory: "lots".into(), ..Settings::default() },
            Settings { cache_ttl_secs: 0, ..Settings::default() },
            Settings { image_pull_policy: "Sometimes".into(), ..Settings::default() },
            Settings { image_id: Some("latest".into()), ..Settings::default() },
            Settings { postgres_storage: PostgresStorage::Pvc { size: "big".into() }, ..Settings::default() },
        ];
        let options: Vec<_> = cases.iter().map(|s| s.validate().unwrap_err().option).collect();
        assert_eq!(
            options,
            [
                "node port",
                "namespace",
                "redis maxmemory policy",
                "redis maxmemory",
                "cache TTL",
                "image pull policy",
                "image ID",
                "PVC size"
            ]
        );
    }

    #[test]
    fn image_ids_are_digests() {
        let hex = "3f2a".repeat(16);
        assert!(is_image_id(&format!("sha256:{hex}")));
        assert!(!is_image_id(&hex), "without the algorithm");
        assert!(!is_image_id("sha256:XYZ0123456789"));
        assert!(!is_image_id("sha256:abc"), "too short to identify anything");
        assert!(!is_image_id("cache-demo-app:latest"));
    }
}
