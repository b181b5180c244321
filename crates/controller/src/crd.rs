//! The `CacheDemo` resource: one whole deployment of cache-demo as a Kubernetes object, kept true by the operator
//! (`cache-demo-ctl operator`). Its spec is the one description of a deployment: `up`'s flags build a spec, the
//! operator reads one, and both become [`Settings`] for the same object builders, so the two paths cannot drift.
//! The schema the API server validates with is generated from these types (`cache-demo-ctl crd`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use kube::core::crd::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::{self, PostgresStorage, Settings};

pub const GROUP: &str = "cache-demo.dev";
pub const VERSION: &str = "v1alpha1";
pub const PLURAL: &str = "cachedemos";

/// A cache-demo deployment: PostgreSQL, Redis and the app, in the resource's namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cache-demo.dev",
    version = "v1alpha1",
    kind = "CacheDemo",
    plural = "cachedemos",
    shortname = "cdemo",
    namespaced,
    status = "CacheDemoStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready","description":"Components ready"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas","description":"App pods"}"#,
    printcolumn = r#"{"name":"Hit Ratio","type":"string","jsonPath":".status.cache.hitRatio"}"#,
    printcolumn = r#"{"name":"Keys","type":"string","jsonPath":".status.cache.keys"}"#,
    printcolumn = r#"{"name":"Memory","type":"string","jsonPath":".status.cache.memory"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CacheDemoSpec {
    /// The app image.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// The ID of the app image (`sha256:...`): a new ID rolls the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]+:[0-9a-f]{12,128}$"))]
    pub image_id: Option<String>,
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Pods of the app.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 20))]
    pub replicas: i32,
    #[serde(default)]
    pub cache: CacheSpec,
    #[serde(default)]
    pub redis: RedisSpec,
    #[serde(default)]
    pub postgres: PostgresSpec,
    /// The fixed NodePort of Service cache-demo-app.
    #[serde(default = "default_node_port")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: i32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// TTL of cached entries in seconds (the app's CACHE_TTL_SECS).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_secs: u64,
    /// Artificial delay of every database query in ms (the app's DB_DELAY_MS).
    #[serde(default)]
    #[schemars(range(max = 10000))]
    pub db_delay_ms: u64,
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec { ttl_secs: settings::DEFAULT_TTL_SECS, db_delay_ms: 0 }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Redis `maxmemory` in Redis notation: k/m/g powers of 1000, kb/mb/gb powers of 1024 (64mb).
    #[serde(default = "default_maxmemory")]
    #[schemars(regex(pattern = r"^[0-9]+([kKmMgG][bB]?|[bB])?$"))]
    pub maxmemory: String,
    #[serde(default)]
    pub policy: EvictionPolicy,
    #[serde(default = "default_redis_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Run redis_exporter beside Redis.
    #[serde(default = "default_true")]
    pub exporter: bool,
    #[serde(default = "default_exporter_image")]
    #[schemars(length(min = 1))]
    pub exporter_image: String,
}

impl Default for RedisSpec {
    fn default() -> Self {
        RedisSpec {
            maxmemory: default_maxmemory(),
            policy: EvictionPolicy::default(),
            image: default_redis_image(),
            exporter: true,
            exporter_image: default_exporter_image(),
        }
    }
}

/// Redis' `maxmemory-policy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    Noeviction,
    #[default]
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl EvictionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::Noeviction => "noeviction",
            EvictionPolicy::AllkeysLru => "allkeys-lru",
            EvictionPolicy::AllkeysLfu => "allkeys-lfu",
            EvictionPolicy::AllkeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn parse(value: &str) -> Option<EvictionPolicy> {
        EvictionPolicy::ALL.into_iter().find(|p| p.as_str() == value)
    }

    pub const ALL: [EvictionPolicy; 8] = [
        EvictionPolicy::Noeviction,
        EvictionPolicy::AllkeysLru,
        EvictionPolicy::AllkeysLfu,
        EvictionPolicy::AllkeysRandom,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ];
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    #[serde(default = "default_postgres_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// emptyDir: reseeded from init.sql on every pod start; pvc: kept until the resource is deleted.
    #[serde(default)]
    pub storage: StorageKind,
    /// Size of the PVC with storage pvc.
    #[serde(default = "default_pvc_size")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(k|M|G|T|Ki|Mi|Gi|Ti)?$"))]
    pub pvc_size: String,
}

impl Default for PostgresSpec {
    fn default() -> Self {
        PostgresSpec { image: default_postgres_image(), storage: StorageKind::default(), pvc_size: default_pvc_size() }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StorageKind {
    #[default]
    EmptyDir,
    Pvc,
}

impl Default for CacheDemoSpec {
    fn default() -> Self {
        CacheDemoSpec {
            image: default_image(),
            image_id: None,
            image_pull_policy: PullPolicy::default(),
            replicas: default_replicas(),
            cache: CacheSpec::default(),
            redis: RedisSpec::default(),
            postgres: PostgresSpec::default(),
            node_port: default_node_port(),
        }
    }
}

impl CacheDemoSpec {
    /// The settings the object builders take, for a deployment in `namespace`.
    pub fn settings(&self, namespace: &str) -> Settings {
        Settings {
            namespace: namespace.into(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            image_pull_policy: self.image_pull_policy.as_str().into(),
            replicas: self.replicas,
            postgres_image: self.postgres.image.clone(),
            redis_image: self.redis.image.clone(),
            redis_exporter: self.redis.exporter,
            redis_exporter_image: self.redis.exporter_image.clone(),
            redis_maxmemory: self.redis.maxmemory.clone(),
            redis_policy: self.redis.policy.as_str().into(),
            cache_ttl_secs: self.cache.ttl_secs,
            db_delay_ms: self.cache.db_delay_ms,
            node_port: self.node_port,
            postgres_storage: match self.postgres.storage {
                StorageKind::EmptyDir => PostgresStorage::EmptyDir,
                StorageKind::Pvc => PostgresStorage::Pvc { size: self.postgres.pvc_size.clone() },
            },
        }
    }
}

/// What the operator last saw.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheDemoStatus {
    /// The generation of the spec these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Components ready of all (`3/3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    #[serde(default)]
    pub components: Vec<ComponentStatus>,
    /// The dashboard's NodePort URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Live figures from the app's /api/stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheFigures>,
}

/// A condition as Kubernetes writes them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word.
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The Deployment: postgres, redis, cache-demo-app.
    pub name: String,
    pub ready: i32,
    pub desired: i32,
}

/// Cache figures as the app reports them, refreshed on every look; `unknown` when it could not be asked. They
/// carry no time of reading, so the status changes only when a figure does.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheFigures {
    /// `93.5%`, `-` before the first request, `unknown`.
    pub hit_ratio: String,
    /// This app's keys in Redis, or `unknown`.
    pub keys: String,
    /// Redis memory used / maxmemory (`1.2Mi/64Mi`), or `unknown`.
    pub memory: String,
    /// Keys Redis evicted since it started, or `unknown`.
    pub evicted_keys: String,
}

/// The CustomResourceDefinition, as `cache-demo-ctl crd` prints it.
pub fn definition() -> CustomResourceDefinition {
    CacheDemo::crd()
}

fn default_image() -> String {
    settings::DEFAULT_IMAGE.into()
}
fn default_replicas() -> i32 {
    1
}
fn default_node_port() -> i32 {
    settings::DEFAULT_NODE_PORT
}
fn default_ttl() -> u64 {
    settings::DEFAULT_TTL_SECS
}
fn default_maxmemory() -> String {
    settings::DEFAULT_MAXMEMORY.into()
}
fn default_redis_image() -> String {
    settings::DEFAULT_REDIS_IMAGE.into()
}
fn default_true() -> bool {
    true
}
fn default_exporter_image() -> String {
    settings::DEFAULT_REDIS_EXPORTER_IMAGE.into()
}
fn default_postgres_image() -> String {
    settings::DEFAULT_POSTGRES_IMAGE.into()
}
fn default_pvc_size() -> String {
    settings::DEFAULT_PVC_SIZE.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_spec_is_the_default_deployment() {
        let spec: CacheDemoSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(spec, CacheDemoSpec::default());
        assert_eq!(spec.settings(settings::DEFAULT_NAMESPACE), Settings::default());
    }

    #[test]
    fn every_policy_round_trips() {
        for policy in EvictionPolicy::ALL {
            assert_eq!(EvictionPolicy::parse(policy.as_str()), Some(policy));
            let json = serde_json::to_value(policy).unwrap();
            assert_eq!(json, policy.as_str());
        }
        assert_eq!(settings::REDIS_POLICIES.len(), EvictionPolicy::ALL.len());
    }

    #[test]
    fn the_definition_is_namespaced_with_status_and_columns() {
        let crd = definition();
        assert_eq!(crd.metadata.name.as_deref(), Some("cachedemos.cache-demo.dev"));
        let spec = &crd.spec;
        assert_eq!(spec.scope, "Namespaced");
        assert_eq!(spec.names.short_names, Some(vec!["cdemo".to_string()]));
        let version = &spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Ready", "Replicas", "Hit Ratio", "Keys", "Memory", "URL", "Age"]);
        let schema = serde_json::to_value(&version.schema).unwrap();
        let spec_schema = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec_schema["replicas"]["maximum"].as_f64(), Some(20.0));
        assert_eq!(spec_schema["nodePort"]["minimum"].as_f64(), Some(30000.0));
        assert!(spec_schema["redis"]["properties"]["policy"]["enum"].as_array().unwrap().len() == 8);
        assert!(spec_schema["redis"]["properties"]["maxmemory"]["pattern"].is_string());
    }
}
