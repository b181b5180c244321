//! Operator mode's own objects: the CacheDemo CRD, the operator's ServiceAccount with least-privilege RBAC (a
//! Role for what it manages in its namespace, a ClusterRole only to read node addresses for the URL), its
//! Deployment (the app's image, which carries `cache-demo-ctl`), and the CacheDemo itself.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HTTPGetAction, PodSpec, Probe, ServiceAccount, Volume,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::crd::{CacheDemo, CacheDemoSpec};

/// The operator's Deployment, ServiceAccount, Role and bindings.
pub const OPERATOR: &str = "cache-demo-operator";
/// The CacheDemo `make deploy-operator` creates.
pub const SAMPLE: &str = "demo";
/// Where the operator's probes and metrics answer.
pub const OPERATOR_PORT: i32 = 8080;

/// What the operator may do in its namespace: exactly the requests it makes (tests/operator.rs compares). A
/// server-side apply that creates an object is authorized as `create` as well as `patch`.
pub fn role_rules() -> Vec<PolicyRule> {
    let children = ["get", "list", "watch", "create", "patch"];
    vec![
        rule(crate::crd::GROUP, &[crate::crd::PLURAL], &["get", "list", "watch"]),
        rule(crate::crd::GROUP, &["cachedemos/status"], &["patch"]),
        rule("", &["configmaps", "persistentvolumeclaims", "secrets", "services"], &children),
        rule("apps", &["deployments"], &children),
        rule("networking.k8s.io", &["networkpolicies"], &children),
        // Why a pod is stuck; the figures of the app's /api/stats through its Service.
        rule("", &["events", "pods"], &["list"]),
        rule("", &["services/proxy"], &["get"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

/// What it may do cluster-wide: read node addresses, for the dashboard's URL.
pub fn cluster_role_rules() -> Vec<PolicyRule> {
    vec![rule("", &["nodes"], &["list"])]
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// The ClusterRole's name: per namespace, so two operators in two namespaces do not share one.
pub fn cluster_role_name(s: &Settings) -> String {
    format!("{OPERATOR}-{}", s.namespace)
}

pub fn operator_service_account(s: &Settings) -> ServiceAccount {
    ServiceAccount { metadata: meta(s, OPERATOR, labels(OPERATOR, "operator")), ..ServiceAccount::default() }
}

fn subject(s: &Settings) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: OPERATOR.into(),
        namespace: Some(s.namespace.clone()),
        ..Subject::default()
    }]
}

pub fn operator_role(s: &Settings) -> Role {
    Role { metadata: meta(s, OPERATOR, labels(OPERATOR, "operator")), rules: Some(role_rules()) }
}

pub fn operator_role_binding(s: &Settings) -> RoleBinding {
    RoleBinding {
        metadata: meta(s, OPERATOR, labels(OPERATOR, "operator")),
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: OPERATOR.into() },
        subjects: Some(subject(s)),
    }
}

pub fn operator_cluster_role(s: &Settings) -> ClusterRole {
    let mut metadata = meta(s, &cluster_role_name(s), labels(OPERATOR, "operator"));
    metadata.namespace = None;
    ClusterRole { metadata, rules: Some(cluster_role_rules()), ..ClusterRole::default() }
}

pub fn operator_cluster_role_binding(s: &Settings) -> ClusterRoleBinding {
    let mut metadata = meta(s, &cluster_role_name(s), labels(OPERATOR, "operator"));
    metadata.namespace = None;
    ClusterRoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: cluster_role_name(s),
        },
        subjects: Some(subject(s)),
    }
}

/// `cache-demo-ctl operator` from the app's image, as a non-root pod with the operator's ServiceAccount.
pub fn operator_deployment(s: &Settings) -> Deployment {
    let http_probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "operator".into(),
        image: Some(s.image.clone()),
        image_pull_policy: Some(s.image_pull_policy.clone()),
        command: Some(
            ["cache-demo-ctl", "operator", "--namespace", &s.namespace, "--probe-addr"]
                .iter()
                .map(|a| a.to_string())
                .chain([format!("0.0.0.0:{OPERATOR_PORT}")])
                .collect(),
        ),
        ports: Some(vec![container_port("http", OPERATOR_PORT)]),
        readiness_probe: Some(http_probe("/readyz")),
        liveness_probe: Some(http_probe("/healthz")),
        resources: Some(resources(("20m", "32Mi"), ("500m", "128Mi"))),
        security_context: Some(container_security(true)),
        volume_mounts: Some(vec![mount("tmp", "/tmp", false)]),
        ..Container::default()
    };
    let pod = PodSpec {
        service_account_name: Some(OPERATOR.into()),
        security_context: Some(pod_security(APP_UID, APP_UID)),
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    let mut annotations = scrape_annotations(OPERATOR_PORT);
    if let Some(id) = &s.image_id {
        annotations.insert(IMAGE_ID_ANNOTATION.to_owned(), id.clone());
    }
    let workload = Workload {
        name: OPERATOR,
        component: "operator",
        replicas: 1,
        recreate: true,
        pod_annotations: Some(annotations),
        pod,
    };
    deployment(s, workload)
}

/// The CacheDemo of operator mode: the spec the flags describe.
pub fn cache_demo(s: &Settings, spec: &CacheDemoSpec) -> CacheDemo {
    let mut demo = CacheDemo::new(SAMPLE, spec.clone());
    demo.metadata = meta(s, SAMPLE, labels(SAMPLE, "deployment"));
    demo
}

/// Operator mode's objects in apply order: the definition and the operator first, then the CacheDemo.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorObjects {
    pub namespace: Namespace,
    pub crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub operator: Deployment,
    pub cache_demo: CacheDemo,
}

impl OperatorObjects {
    pub fn build(s: &Settings, spec: &CacheDemoSpec) -> OperatorObjects {
        OperatorObjects {
            namespace: namespace(s),
            crd: crate::crd::definition(),
            service_account: operator_service_account(s),
            role: operator_role(s),
            role_binding: operator_role_binding(s),
            cluster_role: operator_cluster_role(s),
            cluster_role_binding: operator_cluster_role_binding(s),
            operator: operator_deployment(s),
            cache_demo: cache_demo(s, spec),
        }
    }

    /// The files of `deploy/operator/`, in apply order.
    pub fn parts(&self) -> Vec<Part> {
        vec![
            Part {
                file: "crd.yaml",
                objects: vec![Object::CustomResourceDefinition(self.crd.clone())],
                ready_first: &[],
            },
            Part {
                file: "operator.yaml",
                objects: vec![
                    Object::Namespace(self.namespace.clone()),
                    Object::ServiceAccount(self.service_account.clone()),
                    Object::Role(self.role.clone()),
                    Object::RoleBinding(self.role_binding.clone()),
                    Object::ClusterRole(self.cluster_role.clone()),
                    Object::ClusterRoleBinding(self.cluster_role_binding.clone()),
                    Object::Deployment(self.operator.clone()),
                ],
                ready_first: &[],
            },
            Part {
                file: "cachedemo.yaml",
                objects: vec![Object::CacheDemo(Box::new(self.cache_demo.clone()))],
                ready_first: &[OPERATOR],
            },
        ]
    }

    pub fn all(&self) -> Vec<Object> {
        self.parts().into_iter().flat_map(|part| part.objects).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rule_has_a_wildcard() {
        for rule in role_rules().iter().chain(&cluster_role_rules()) {
            let words: Vec<&String> = rule
                .verbs
                .iter()
                .chain(rule.resources.iter().flatten())
                .chain(rule.api_groups.iter().flatten())
                .collect();
            assert!(!words.iter().any(|w| w.contains('*')), "{rule:?}");
            assert!(!rule.verbs.iter().any(|v| v == "delete" || v == "update"), "{rule:?}");
        }
    }

    #[test]
    fn the_operator_runs_ctl_with_its_account_and_probes() {
        let d = operator_deployment(&Settings::default());
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some(OPERATOR));
        let c = &pod.containers[0];
        assert_eq!(c.command.as_ref().unwrap()[..4], ["cache-demo-ctl", "operator", "--namespace", "redis-demo"]);
        assert_eq!(c.image.as_deref(), Some("cache-demo-app:latest"));
        assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
    }
}
