//! The Kubernetes objects of a cache-demo deployment, built as typed k8s-openapi values by pure functions of
//! [`Settings`] (and, for the Secret, of [`Credentials`]). `up` applies them, `render` prints them, `status`
//! looks them up: all three use these builders and nothing else decides what an object contains.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, HTTPGetAction, Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, Secret, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::settings::{PostgresStorage, Settings, names, secret_keys};

/// The catalogue schema and seed data, the same file every environment loads.
pub const INIT_SQL: &str = include_str!("../../../init.sql");

pub const APP_PORT: i32 = 8000;
pub const POSTGRES_PORT: i32 = 5432;
pub const REDIS_PORT: i32 = 6379;
/// The app image's user (`USER 10001` in the Containerfile).
pub const APP_UID: i64 = 10001;
/// The `postgres` user of the official Alpine image.
pub const POSTGRES_UID: i64 = 70;
/// The `redis` user and group of the official Alpine image.
pub const REDIS_UID: i64 = 999;
pub const REDIS_GID: i64 = 1000;
/// PostgreSQL refuses a data directory that is a mount point with other files in it: use a subdirectory.
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// Length of generated passwords and tokens (alphanumeric: safe inside `DATABASE_URL` without escaping).
pub const GENERATED_LEN: usize = 32;
/// Annotation on the rendered Secret saying its values are placeholders.
pub const NOTICE_ANNOTATION: &str = "cache-demo/notice";
/// Annotation on the app's pod template: the ID of the image `make deploy` built. A new build changes it, so the
/// Deployment rolls; the same build leaves the template, and the pods, as they are.
pub const IMAGE_ID_ANNOTATION: &str = "cache-demo/image-id";

const LABEL_NAME: &str = "app.kubernetes.io/name";
const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// What goes into the Secret.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// Real values, stored as `data`.
    Values(BTreeMap<String, ByteString>),
    /// Marked placeholders for the checked-in YAML, stored as `stringData` so a reader sees what to change.
    Placeholders,
}

impl Credentials {
    /// Keeps every value an existing Secret already has and generates only the missing ones, so a re-apply
    /// never rotates a password a running PostgreSQL was initialised with. Returns the keys it generated.
    pub fn reuse_or_generate(existing: Option<&Secret>) -> (Credentials, Vec<&'static str>) {
        Self::reuse_or_generate_with(existing, generate_secret_value)
    }

    /// [`Credentials::reuse_or_generate`] with the generator supplied.
    pub fn reuse_or_generate_with(
        existing: Option<&Secret>,
        mut generate: impl FnMut() -> String,
    ) -> (Credentials, Vec<&'static str>) {
        let data = existing.and_then(|s| s.data.as_ref());
        let mut values = BTreeMap::new();
        let mut generated = Vec::new();
        for key in secret_keys::ALL {
            match data.and_then(|d| d.get(key)).filter(|v| !v.0.is_empty()) {
                Some(value) => {
                    values.insert(key.to_owned(), value.clone());
                }
                None => {
                    values.insert(key.to_owned(), ByteString(generate().into_bytes()));
                    generated.push(key);
                }
            }
        }
        (Credentials::Values(values), generated)
    }
}

/// 32 random alphanumeric characters.
pub fn generate_secret_value() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(GENERATED_LEN).map(char::from).collect()
}

/// The placeholder `render` writes for a Secret key.
pub fn placeholder(key: &str) -> String {
    format!("CHANGE-ME-{key}")
}

/// One object of any kind this deployment uses.
// A dozen values built once per run: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Secret(Secret),
    ConfigMap(ConfigMap),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Deployment(Deployment),
    Service(Service),
    NetworkPolicy(NetworkPolicy),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::NetworkPolicy(_) => "NetworkPolicy",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `kind/name` in the short form kubectl prints (`deployment/redis`).
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind().to_ascii_lowercase(), self.name())
    }
}

/// Every object of one deployment, in the order `up` applies them.
#[derive(Debug, Clone, PartialEq)]
pub struct Objects {
    pub namespace: Namespace,
    pub secret: Secret,
    pub init_sql: ConfigMap,
    pub postgres_data: Option<PersistentVolumeClaim>,
    pub postgres: Deployment,
    pub postgres_service: Service,
    pub postgres_policy: NetworkPolicy,
    pub redis: Deployment,
    pub redis_service: Service,
    pub redis_policy: NetworkPolicy,
    pub app: Deployment,
    pub app_service: Service,
}

impl Objects {
    pub fn build(s: &Settings, credentials: &Credentials) -> Objects {
        Objects {
            namespace: namespace(s),
            secret: secret(s, credentials),
            init_sql: init_sql_config_map(s),
            postgres_data: postgres_pvc(s),
            postgres: postgres_deployment(s),
            postgres_service: postgres_service(s),
            postgres_policy: postgres_network_policy(s),
            redis: redis_deployment(s),
            redis_service: redis_service(s),
            redis_policy: redis_network_policy(s),
            app: app_deployment(s),
            app_service: app_service(s),
        }
    }

    /// The files of `render --out-dir`, each with its objects in apply order.
    pub fn files(&self) -> Vec<(&'static str, Vec<Object>)> {
        let mut postgres = vec![Object::ConfigMap(self.init_sql.clone())];
        postgres.extend(self.postgres_data.clone().map(Object::PersistentVolumeClaim));
        postgres.extend([
            Object::Deployment(self.postgres.clone()),
            Object::Service(self.postgres_service.clone()),
            Object::NetworkPolicy(self.postgres_policy.clone()),
        ]);
        vec![
            ("namespace.yaml", vec![Object::Namespace(self.namespace.clone()), Object::Secret(self.secret.clone())]),
            ("postgres.yaml", postgres),
            (
                "redis.yaml",
                vec![
                    Object::Deployment(self.redis.clone()),
                    Object::Service(self.redis_service.clone()),
                    Object::NetworkPolicy(self.redis_policy.clone()),
                ],
            ),
            ("app.yaml", vec![Object::Deployment(self.app.clone()), Object::Service(self.app_service.clone())]),
        ]
    }

    /// Every object, in apply order.
    pub fn all(&self) -> Vec<Object> {
        self.files().into_iter().flat_map(|(_, objects)| objects).collect()
    }
}

/// The recommended labels of one component.
pub fn labels(name: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert(LABEL_COMPONENT.into(), component.into());
    labels.insert(LABEL_PART_OF.into(), names::PART_OF.into());
    labels.insert(LABEL_MANAGED_BY.into(), names::FIELD_MANAGER.into());
    labels
}

/// The labels that select a component's pods: stable across versions, so Deployments can be updated in place.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_NAME.into(), name.into()), (LABEL_INSTANCE.into(), names::PART_OF.into())])
}

/// `key=value,...` for a list call.
pub fn label_selector_query(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn meta(s: &Settings, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(s.namespace.clone()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

pub fn namespace(s: &Settings) -> Namespace {
    let mut labels = BTreeMap::from([
        (LABEL_PART_OF.to_owned(), names::PART_OF.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), names::FIELD_MANAGER.to_owned()),
    ]);
    // Every pod here meets the "restricted" Pod Security Standard; let the cluster hold us to it.
    labels.insert("pod-security.kubernetes.io/enforce".into(), "restricted".into());
    labels.insert("pod-security.kubernetes.io/warn".into(), "restricted".into());
    Namespace {
        metadata: ObjectMeta { name: Some(s.namespace.clone()), labels: Some(labels), ..ObjectMeta::default() },
        ..Namespace::default()
    }
}

pub fn secret(s: &Settings, credentials: &Credentials) -> Secret {
    let mut metadata = meta(s, names::SECRET, labels(names::PART_OF, "credentials"));
    let mut secret = Secret { type_: Some("Opaque".into()), ..Secret::default() };
    match credentials {
        Credentials::Values(values) => {
            let ours = values.iter().filter(|(k, _)| secret_keys::ALL.contains(&k.as_str()));
            secret.data = Some(ours.map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        Credentials::Placeholders => {
            metadata.annotations = Some(BTreeMap::from([(
                NOTICE_ANNOTATION.to_owned(),
                "placeholder values: replace every CHANGE-ME value (alphanumeric only) before applying".to_owned(),
            )]));
            secret.string_data = Some(secret_keys::ALL.iter().map(|k| (k.to_string(), placeholder(k))).collect());
        }
    }
    secret.metadata = metadata;
    secret
}

pub fn init_sql_config_map(s: &Settings) -> ConfigMap {
    ConfigMap {
        metadata: meta(s, names::INIT_SQL, labels(names::POSTGRES, "database")),
        data: Some(BTreeMap::from([("init.sql".to_owned(), INIT_SQL.to_owned())])),
        ..ConfigMap::default()
    }
}

pub fn postgres_pvc(s: &Settings) -> Option<PersistentVolumeClaim> {
    let PostgresStorage::Pvc { size } = &s.postgres_storage else { return None };
    Some(PersistentVolumeClaim {
        metadata: meta(s, names::POSTGRES_DATA, labels(names::POSTGRES, "database")),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

pub fn postgres_deployment(s: &Settings) -> Deployment {
    let data_volume = match &s.postgres_storage {
        PostgresStorage::EmptyDir => {
            Volume { name: "data".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
        }
        PostgresStorage::Pvc { .. } => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::POSTGRES_DATA.into(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
    };
    let container = Container {
        name: names::POSTGRES.into(),
        image: Some(s.postgres_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![container_port("postgres", POSTGRES_PORT)]),
        env: Some(vec![
            env("POSTGRES_USER", names::DATABASE_USER),
            env("POSTGRES_DB", names::DATABASE),
            env_from_secret("POSTGRES_PASSWORD", secret_keys::POSTGRES_PASSWORD),
            env("PGDATA", PGDATA),
        ]),
        // Over TCP, so the server the image runs only on its socket while init.sql loads does not count.
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..exec_probe(&["pg_isready", "-h", "127.0.0.1", "-U", names::DATABASE_USER, "-d", names::DATABASE])
        }),
        // Over the socket, so the first start (initdb, then init.sql) is not taken for a hang.
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..exec_probe(&["pg_isready", "-U", names::DATABASE_USER])
        }),
        resources: Some(resources(("100m", "256Mi"), ("1", "512Mi"))),
        security_context: Some(container_security(false)),
        volume_mounts: Some(vec![
            mount("data", "/var/lib/postgresql/data", false),
            mount("init-sql", "/docker-entrypoint-initdb.d", true),
        ]),
        ..Container::default()
    };
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(pod_security(POSTGRES_UID, POSTGRES_UID)),
        containers: vec![container],
        volumes: Some(vec![
            data_volume,
            Volume {
                name: "init-sql".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::INIT_SQL.into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    // Recreate: two PostgreSQL pods must never share one data volume during a rollout.
    deployment(s, names::POSTGRES, "database", 1, Some("Recreate"), None, pod)
}

pub fn postgres_service(s: &Settings) -> Service {
    cluster_service(s, names::POSTGRES, "database", "postgres", POSTGRES_PORT)
}

/// PostgreSQL accepts connections from the app's pods only.
pub fn postgres_network_policy(s: &Settings) -> NetworkPolicy {
    allow_app_only(s, names::POSTGRES_POLICY, names::POSTGRES, "database", POSTGRES_PORT)
}

/// The arguments of `redis-server`: memory bound and eviction policy from the settings, the password from the
/// Secret through Kubernetes' `$(VAR)` expansion, and no persistence (a cache that survives nothing).
pub fn redis_args(s: &Settings) -> Vec<String> {
    [
        "redis-server",
        "--maxmemory",
        &s.redis_maxmemory,
        "--maxmemory-policy",
        &s.redis_policy,
        "--requirepass",
        "$(REDIS_PASSWORD)",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec()
}

pub fn redis_deployment(s: &Settings) -> Deployment {
    let limit = format!("{}Mi", s.redis_memory_limit_mib());
    let request = format!("{}Mi", (s.redis_memory_limit_mib() / 2).max(64));
    let container = Container {
        name: names::REDIS.into(),
        image: Some(s.redis_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(redis_args(s)),
        ports: Some(vec![container_port("redis", REDIS_PORT)]),
        env: Some(vec![
            env_from_secret("REDIS_PASSWORD", secret_keys::REDIS_PASSWORD),
            // redis-cli reads its password from here: `kubectl exec -it deploy/redis -- redis-cli` just works,
            // and the probe below authenticates without the password in its argv.
            env_from_secret("REDISCLI_AUTH", secret_keys::REDIS_PASSWORD),
        ]),
        // `redis-cli ping` prints an error reply but may still exit 0; PONG is the only answer that counts.
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..exec_probe(&["sh", "-c", "redis-cli ping | grep -q PONG"])
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".into()),
                ..TCPSocketAction::default()
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: Some(resources(("50m", &request), ("500m", &limit))),
        security_context: Some(container_security(true)),
        volume_mounts: Some(vec![mount("data", "/data", false)]),
        ..Container::default()
    };
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(pod_security(REDIS_UID, REDIS_GID)),
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    deployment(s, names::REDIS, "cache", 1, None, None, pod)
}

pub fn redis_service(s: &Settings) -> Service {
    cluster_service(s, names::REDIS, "cache", "redis", REDIS_PORT)
}

/// Redis accepts connections from the app's pods only.
pub fn redis_network_policy(s: &Settings) -> NetworkPolicy {
    allow_app_only(s, names::REDIS_POLICY, names::REDIS, "cache", REDIS_PORT)
}

/// The app's environment. `DATABASE_URL` is assembled by Kubernetes from `$(POSTGRES_PASSWORD)`, defined
/// before it, so no password is ever written into an object.
pub fn app_env(s: &Settings) -> Vec<EnvVar> {
    vec![
        env_from_secret("POSTGRES_PASSWORD", secret_keys::POSTGRES_PASSWORD),
        env(
            "DATABASE_URL",
            &format!(
                "postgres://{}:$(POSTGRES_PASSWORD)@{}:{POSTGRES_PORT}/{}",
                names::DATABASE_USER,
                names::POSTGRES,
                names::DATABASE
            ),
        ),
        env("REDIS_URL", &format!("redis://{}:{REDIS_PORT}/", names::REDIS)),
        env_from_secret("REDIS_PASSWORD", secret_keys::REDIS_PASSWORD),
        env_from_secret("ADMIN_TOKEN", secret_keys::ADMIN_TOKEN),
        env("LISTEN_ADDR", &format!("0.0.0.0:{APP_PORT}")),
        env("CACHE_PREFIX", "cache-demo"),
        env("CACHE_TTL_SECS", &s.cache_ttl_secs.to_string()),
        env("DB_DELAY_MS", &s.db_delay_ms.to_string()),
        env("LOG_FORMAT", "json"),
    ]
}

pub fn app_deployment(s: &Settings) -> Deployment {
    let http_probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    };
    let container = Container {
        name: "app".into(),
        image: Some(s.image.clone()),
        image_pull_policy: Some(s.image_pull_policy.clone()),
        ports: Some(vec![container_port("http", APP_PORT)]),
        env: Some(app_env(s)),
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..http_probe("/readyz")
        }),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..http_probe("/healthz")
        }),
        resources: Some(resources(("50m", "64Mi"), ("1", "256Mi"))),
        security_context: Some(container_security(true)),
        volume_mounts: Some(vec![mount("tmp", "/tmp", false)]),
        ..Container::default()
    };
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(pod_security(APP_UID, APP_UID)),
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("16Mi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), APP_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    if let Some(id) = &s.image_id {
        annotations.insert(IMAGE_ID_ANNOTATION.to_owned(), id.clone());
    }
    deployment(s, names::APP, "server", s.replicas, None, Some(annotations), pod)
}

/// `cache-demo-app`: a NodePort on a fixed port, so the URL stays the same across re-deploys.
pub fn app_service(s: &Settings) -> Service {
    let mut service = cluster_service(s, names::APP, "server", "http", APP_PORT);
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
        for port in spec.ports.iter_mut().flatten() {
            port.node_port = Some(s.node_port);
        }
    }
    service
}

fn deployment(
    s: &Settings,
    name: &str,
    component: &str,
    replicas: i32,
    strategy: Option<&str>,
    annotations: Option<BTreeMap<String, String>>,
    pod: PodSpec,
) -> Deployment {
    let labels = labels(name, component);
    Deployment {
        metadata: meta(s, name, labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(name)), ..LabelSelector::default() },
            strategy: strategy.map(|t| DeploymentStrategy { type_: Some(t.into()), ..DeploymentStrategy::default() }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), annotations, ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn cluster_service(s: &Settings, name: &str, component: &str, port_name: &str, port: i32) -> Service {
    Service {
        metadata: meta(s, name, labels(name, component)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(name)),
            ports: Some(vec![ServicePort {
                name: Some(port_name.into()),
                port,
                target_port: Some(IntOrString::String(port_name.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn allow_app_only(s: &Settings, policy: &str, target: &str, component: &str, port: i32) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(s, policy, labels(target, component)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(target)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(names::APP)),
                        ..LabelSelector::default()
                    }),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(port)),
                    protocol: Some("TCP".into()),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

fn env_from_secret(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names::SECRET.into(),
                key: key.into(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(command.iter().map(|c| c.to_string()).collect()) }),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let pair = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into())), ("memory".to_owned(), Quantity(memory.into()))])
    };
    ResourceRequirements {
        requests: Some(pair(requests)),
        limits: Some(pair(limits)),
        ..ResourceRequirements::default()
    }
}

/// Non-root with the runtime's default seccomp profile: what the "restricted" Pod Security Standard asks.
fn pod_security(uid: i64, gid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(gid),
        fs_group: Some(gid),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

fn container_security(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(d: &Deployment) -> &Container {
        &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
    }

    fn env_names(c: &Container) -> Vec<&str> {
        c.env.iter().flatten().map(|e| e.name.as_str()).collect()
    }

    fn secret_ref<'a>(c: &'a Container, name: &str) -> Option<&'a SecretKeySelector> {
        let var = c.env.iter().flatten().find(|e| e.name == name)?;
        var.value_from.as_ref()?.secret_key_ref.as_ref()
    }

    #[test]
    fn every_object_is_namespaced_and_labelled() {
        let objects = Objects::build(&Settings::default(), &Credentials::Placeholders).all();
        let mut seen = std::collections::BTreeSet::new();
        for o in &objects {
            assert!(seen.insert(o.label()), "duplicate {}", o.label());
            let labels = o.metadata().labels.clone().unwrap_or_default();
            assert_eq!(labels.get(LABEL_PART_OF).map(String::as_str), Some("cache-demo"), "{}", o.label());
            assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some("cache-demo-ctl"), "{}", o.label());
            let expected_ns = if o.kind() == "Namespace" { None } else { Some("redis-demo") };
            assert_eq!(o.metadata().namespace.as_deref(), expected_ns, "{}", o.label());
        }
        let labels: Vec<_> = objects.iter().map(Object::label).collect();
        assert_eq!(
            labels,
            [
                "namespace/redis-demo",
                "secret/cache-demo-credentials",
                "configmap/postgres-init-sql",
                "deployment/postgres",
                "service/postgres",
                "networkpolicy/postgres-allow-app",
                "deployment/redis",
                "service/redis",
                "networkpolicy/redis-allow-app",
                "deployment/cache-demo-app",
                "service/cache-demo-app",
            ]
        );
    }

    #[test]
    fn redis_is_bounded_evicts_lru_and_takes_its_password_from_the_secret() {
        let d = redis_deployment(&Settings::default());
        let c = container(&d);
        let args = c.args.clone().unwrap();
        let after = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].as_str());
        assert_eq!(after("--maxmemory"), Some("64mb"));
        assert_eq!(after("--maxmemory-policy"), Some("allkeys-lru"));
        assert_eq!(after("--requirepass"), Some("$(REDIS_PASSWORD)"));
        assert_eq!(after("--save"), Some(""));
        assert_eq!(after("--appendonly"), Some("no"));
        for var in ["REDIS_PASSWORD", "REDISCLI_AUTH"] {
            let r = secret_ref(c, var).unwrap();
            assert_eq!((r.name.as_str(), r.key.as_str()), ("cache-demo-credentials", "redis-password"));
        }
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap().command.clone().unwrap();
        assert!(probe.join(" ").contains("redis-cli ping"), "{probe:?}");
        assert!(!probe.iter().any(|a| a == "-a"), "password must not be in argv");
        let limits = c.resources.as_ref().unwrap().limits.clone().unwrap();
        assert_eq!(limits["memory"], Quantity("128Mi".into()));
    }

    #[test]
    fn redis_settings_reach_the_arguments() {
        let s = Settings { redis_maxmemory: "256mb".into(), redis_policy: "allkeys-lfu".into(), ..Settings::default() };
        let args = redis_args(&s);
        assert!(args.windows(2).any(|w| w == ["--maxmemory", "256mb"]));
        assert!(args.windows(2).any(|w| w == ["--maxmemory-policy", "allkeys-lfu"]));
        let d = redis_deployment(&s);
        assert_eq!(container(&d).resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0, "512Mi");
    }

    #[test]
    fn app_service_is_a_node_port_on_30080() {
        let spec = app_service(&Settings::default()).spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.port, port.node_port), (8000, Some(30080)));
        assert_eq!(spec.selector, Some(selector_labels("cache-demo-app")));
        let spec = app_service(&Settings { node_port: 31000, ..Settings::default() }).spec.unwrap();
        assert_eq!(spec.ports.unwrap()[0].node_port, Some(31000));
    }

    #[test]
    fn app_env_holds_secret_references_and_no_password() {
        let s = Settings { cache_ttl_secs: 30, db_delay_ms: 200, ..Settings::default() };
        let d = app_deployment(&s);
        let c = container(&d);
        let names = env_names(c);
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        // Kubernetes expands $(VAR) only from variables defined earlier in the list.
        assert!(pos("POSTGRES_PASSWORD") < pos("DATABASE_URL"));
        let value = |n: &str| c.env.iter().flatten().find(|e| e.name == n).and_then(|e| e.value.clone());
        assert_eq!(
            value("DATABASE_URL").as_deref(),
            Some("postgres://postgres:$(POSTGRES_PASSWORD)@postgres:5432/cache_demo")
        );
        assert_eq!(value("REDIS_URL").as_deref(), Some("redis://redis:6379/"));
        assert_eq!(value("LOG_FORMAT").as_deref(), Some("json"));
        assert_eq!(value("CACHE_TTL_SECS").as_deref(), Some("30"));
        assert_eq!(value("DB_DELAY_MS").as_deref(), Some("200"));
        for (var, key) in [
            ("POSTGRES_PASSWORD", "postgres-password"),
            ("REDIS_PASSWORD", "redis-password"),
            ("ADMIN_TOKEN", "admin-token"),
        ] {
            assert_eq!(secret_ref(c, var).unwrap().key, key);
        }
    }

    #[test]
    fn app_runs_as_non_root_on_a_read_only_root_with_probes() {
        let d = app_deployment(&Settings::default());
        let template = &d.spec.as_ref().unwrap().template;
        let pod = template.spec.as_ref().unwrap();
        let pod_sc = pod.security_context.as_ref().unwrap();
        assert_eq!((pod_sc.run_as_non_root, pod_sc.run_as_user), (Some(true), Some(10001)));
        assert_eq!(pod_sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let c = container(&d);
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_string()]));
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone().unwrap();
        assert_eq!(path(&c.readiness_probe), "/readyz");
        assert_eq!(path(&c.liveness_probe), "/healthz");
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, "/tmp");
        let annotations = template.metadata.as_ref().unwrap().annotations.clone().unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "8000");
        assert!(pod.containers.iter().all(|c| c.resources.is_some()));
    }

    #[test]
    fn the_image_id_goes_into_the_pod_template_only_when_known() {
        let annotations = |s: &Settings| {
            let d = app_deployment(s);
            d.spec.unwrap().template.metadata.unwrap().annotations.unwrap_or_default()
        };
        assert!(!annotations(&Settings::default()).contains_key(IMAGE_ID_ANNOTATION));
        let id = format!("sha256:{}", "ab".repeat(32));
        let s = Settings { image_id: Some(id.clone()), ..Settings::default() };
        assert_eq!(annotations(&s)[IMAGE_ID_ANNOTATION], id);
        assert_eq!(container(&app_deployment(&s)).image.as_deref(), Some("cache-demo-app:latest"));
    }

    #[test]
    fn every_pod_meets_the_restricted_standard() {
        let o = Objects::build(&Settings::default(), &Credentials::Placeholders);
        for d in [&o.postgres, &o.redis, &o.app] {
            let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let pod_sc = pod.security_context.as_ref().unwrap();
            assert_eq!(pod_sc.run_as_non_root, Some(true));
            assert!(pod_sc.run_as_user.is_some_and(|u| u != 0));
            for c in &pod.containers {
                let sc = c.security_context.as_ref().unwrap();
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
                assert_eq!(sc.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_string()]));
                let r = c.resources.as_ref().unwrap();
                assert!(r.requests.is_some() && r.limits.is_some(), "{}", c.name);
            }
        }
    }

    #[test]
    fn postgres_loads_init_sql_and_is_ready_over_tcp() {
        let d = postgres_deployment(&Settings::default());
        let c = container(&d);
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap().command.clone().unwrap();
        assert_eq!(probe[0], "pg_isready");
        assert!(probe.windows(2).any(|w| w == ["-h", "127.0.0.1"]));
        let mounts = c.volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == "/docker-entrypoint-initdb.d" && m.read_only == Some(true)));
        assert!(PGDATA.starts_with(&format!("{}/", mounts[0].mount_path)));
        assert_eq!(secret_ref(c, "POSTGRES_PASSWORD").unwrap().key, "postgres-password");
        let pod = d.spec.as_ref().unwrap().template.spec.clone().unwrap();
        assert!(pod.volumes.unwrap()[0].empty_dir.is_some());
        let cm = init_sql_config_map(&Settings::default());
        assert!(cm.data.unwrap()["init.sql"].contains("CREATE EXTENSION IF NOT EXISTS pg_trgm"));
    }

    #[test]
    fn pvc_storage_adds_a_claim_and_mounts_it() {
        let s = Settings { postgres_storage: PostgresStorage::Pvc { size: "2Gi".into() }, ..Settings::default() };
        let o = Objects::build(&s, &Credentials::Placeholders);
        let pvc = o.postgres_data.clone().unwrap();
        assert_eq!(pvc.metadata.name.as_deref(), Some("postgres-data"));
        assert_eq!(pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0, "2Gi");
        let pod = o.postgres.spec.clone().unwrap().template.spec.unwrap();
        assert_eq!(pod.volumes.unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "postgres-data");
        assert!(o.all().iter().any(|x| x.kind() == "PersistentVolumeClaim"));
    }

    #[test]
    fn network_policies_admit_only_the_app() {
        for (policy, target, port) in [
            (postgres_network_policy(&Settings::default()), "postgres", 5432),
            (redis_network_policy(&Settings::default()), "redis", 6379),
        ] {
            let spec = policy.spec.unwrap();
            assert_eq!(spec.pod_selector.unwrap().match_labels, Some(selector_labels(target)));
            let rules = spec.ingress.unwrap();
            assert_eq!(rules.len(), 1);
            let from = rules[0].from.clone().unwrap();
            assert_eq!(from.len(), 1);
            assert_eq!(from[0].pod_selector.clone().unwrap().match_labels, Some(selector_labels("cache-demo-app")));
            assert_eq!(rules[0].ports.clone().unwrap()[0].port, Some(IntOrString::Int(port)));
        }
    }

    #[test]
    fn placeholders_are_visible_and_marked() {
        let secret = secret(&Settings::default(), &Credentials::Placeholders);
        assert!(secret.data.is_none());
        let data = secret.string_data.unwrap();
        assert_eq!(data["postgres-password"], "CHANGE-ME-postgres-password");
        assert_eq!(data.len(), 3);
        assert!(secret.metadata.annotations.unwrap()[NOTICE_ANNOTATION].contains("CHANGE-ME"));
    }

    #[test]
    fn existing_values_are_kept_and_only_missing_keys_generated() {
        let existing = Secret {
            data: Some(BTreeMap::from([
                ("postgres-password".to_owned(), ByteString(b"keep-me".to_vec())),
                ("redis-password".to_owned(), ByteString(Vec::new())),
                ("unrelated".to_owned(), ByteString(b"x".to_vec())),
            ])),
            ..Secret::default()
        };
        let (creds, generated) = Credentials::reuse_or_generate_with(Some(&existing), || "fresh".into());
        assert_eq!(generated, ["redis-password", "admin-token"]);
        let Credentials::Values(values) = &creds else { panic!("placeholders") };
        assert_eq!(values["postgres-password"].0, b"keep-me");
        assert_eq!(values["redis-password"].0, b"fresh");
        let built = secret(&Settings::default(), &creds).data.unwrap();
        assert_eq!(built.keys().collect::<Vec<_>>(), ["admin-token", "postgres-password", "redis-password"]);
    }

    #[test]
    fn generated_values_are_long_and_url_safe() {
        let (creds, generated) = Credentials::reuse_or_generate(None);
        assert_eq!(generated.len(), 3);
        let Credentials::Values(values) = creds else { panic!("placeholders") };
        let all: Vec<_> = values.values().map(|v| String::from_utf8(v.0.clone()).unwrap()).collect();
        for v in &all {
            assert_eq!(v.len(), GENERATED_LEN);
            assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()), "{v}");
        }
        assert!(all[0] != all[1] && all[1] != all[2]);
    }
}
