//! The Kubernetes objects of a cache-demo deployment, built as typed k8s-openapi values by pure functions of
//! [`Settings`] (and, for the Secret, of [`Credentials`]). `up` applies them, `render` prints them, `status`
//! looks them up: all three use these builders and nothing else decides what an object contains.
//!
//! One file per component, as in `deploy/`: [`credentials`] (namespace and Secret), [`postgres`], [`redis`],
//! [`app`]. This file holds what they share: the [`Object`] and [`Objects`] types, the apply order as data
//! ([`Objects::parts`]), labels, and the small builders every component uses.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ContainerPort, EnvVar, EnvVarSource, ExecAction, Namespace, PersistentVolumeClaim,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::settings::{PostgresStorage, Settings, names, secret_keys};

mod app;
mod credentials;
mod operator;
mod postgres;
mod redis;

pub use app::*;
pub use credentials::*;
pub use operator::*;
pub use postgres::*;
pub use redis::*;

/// The catalogue schema and seed data, the same file every environment loads.
pub const INIT_SQL: &str = include_str!("../../../../init.sql");

pub const APP_PORT: i32 = 8000;
pub const POSTGRES_PORT: i32 = 5432;
pub const REDIS_PORT: i32 = 6379;
/// redis_exporter's metrics port.
pub const REDIS_EXPORTER_PORT: i32 = 9121;
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
    ServiceAccount(ServiceAccount),
    Role(Role),
    RoleBinding(RoleBinding),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    CustomResourceDefinition(CustomResourceDefinition),
    CacheDemo(Box<crate::crd::CacheDemo>),
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
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::CustomResourceDefinition(_) => "CustomResourceDefinition",
            Object::CacheDemo(_) => "CacheDemo",
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
            Object::ServiceAccount(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
            Object::ClusterRole(o) => &o.metadata,
            Object::ClusterRoleBinding(o) => &o.metadata,
            Object::CustomResourceDefinition(o) => &o.metadata,
            Object::CacheDemo(o) => &o.metadata,
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

    /// The deployment's parts in apply order: each is a file of `render --out-dir`, and `up` waits for the
    /// Deployments a part names in `ready_first` before applying it.
    pub fn parts(&self) -> Vec<Part> {
        let mut postgres = vec![Object::ConfigMap(self.init_sql.clone())];
        postgres.extend(self.postgres_data.clone().map(Object::PersistentVolumeClaim));
        postgres.extend([
            Object::Deployment(self.postgres.clone()),
            Object::Service(self.postgres_service.clone()),
            Object::NetworkPolicy(self.postgres_policy.clone()),
        ]);
        let redis = vec![
            Object::Deployment(self.redis.clone()),
            Object::Service(self.redis_service.clone()),
            Object::NetworkPolicy(self.redis_policy.clone()),
        ];
        let app = vec![Object::Deployment(self.app.clone()), Object::Service(self.app_service.clone())];
        let credentials = vec![Object::Namespace(self.namespace.clone()), Object::Secret(self.secret.clone())];
        vec![
            Part { file: "namespace.yaml", objects: credentials, ready_first: &[] },
            Part { file: "postgres.yaml", objects: postgres, ready_first: &[] },
            Part { file: "redis.yaml", objects: redis, ready_first: &[] },
            // The app is ready only once PostgreSQL answers; it starts cleanly once both backends are up.
            Part { file: "app.yaml", objects: app, ready_first: &[names::POSTGRES, names::REDIS] },
        ]
    }

    /// Makes every object but the namespace owned by `owner` (a CacheDemo), so the garbage collector deletes
    /// them with it and the operator hears of their changes. The one place owner references are set.
    pub fn owned_by(mut self, owner: &OwnerReference) -> Objects {
        let mut metas = vec![
            &mut self.secret.metadata,
            &mut self.init_sql.metadata,
            &mut self.postgres.metadata,
            &mut self.postgres_service.metadata,
            &mut self.postgres_policy.metadata,
            &mut self.redis.metadata,
            &mut self.redis_service.metadata,
            &mut self.redis_policy.metadata,
            &mut self.app.metadata,
            &mut self.app_service.metadata,
        ];
        metas.extend(self.postgres_data.as_mut().map(|pvc| &mut pvc.metadata));
        for meta in metas {
            meta.owner_references = Some(vec![owner.clone()]);
        }
        self
    }

    /// Every object, in apply order.
    pub fn all(&self) -> Vec<Object> {
        self.parts().into_iter().flat_map(|part| part.objects).collect()
    }
}

/// One part of a deployment: a file of `deploy/`, and a step of `up`.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub file: &'static str,
    /// In apply order.
    pub objects: Vec<Object>,
    /// Deployments that must be ready before this part is applied.
    pub ready_first: &'static [&'static str],
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

/// What makes one component's Deployment: everything else (labels, selector, metadata) follows from the name.
struct Workload<'a> {
    name: &'a str,
    /// `app.kubernetes.io/component`.
    component: &'a str,
    replicas: i32,
    /// `Recreate` where two pods must never overlap; the default rolling update otherwise.
    recreate: bool,
    pod_annotations: Option<BTreeMap<String, String>>,
    pod: PodSpec,
}

fn deployment(s: &Settings, w: Workload<'_>) -> Deployment {
    let labels = labels(w.name, w.component);
    let strategy = w.recreate.then(|| DeploymentStrategy { type_: Some("Recreate".into()), ..Default::default() });
    Deployment {
        metadata: meta(s, w.name, labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(w.replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(w.name)), ..LabelSelector::default() },
            strategy,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: w.pod_annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(w.pod),
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

/// The `prometheus.io/*` annotations a Prometheus with the usual Kubernetes scrape configuration follows.
fn scrape_annotations(port: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), port.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ])
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
pub(crate) mod test_support {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Container, SecretKeySelector};

    pub fn container(d: &Deployment) -> &Container {
        &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
    }

    pub fn env_names(c: &Container) -> Vec<&str> {
        c.env.iter().flatten().map(|e| e.name.as_str()).collect()
    }

    pub fn secret_ref<'a>(c: &'a Container, name: &str) -> Option<&'a SecretKeySelector> {
        let var = c.env.iter().flatten().find(|e| e.name == name)?;
        var.value_from.as_ref()?.secret_key_ref.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn network_policies_admit_only_the_app() {
        for (policy, target, port) in [
            (postgres_network_policy(&Settings::default()), "postgres", 5432),
            (redis_network_policy(&Settings { redis_exporter: false, ..Settings::default() }), "redis", 6379),
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
}
