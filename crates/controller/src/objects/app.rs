//! The app: its environment (secrets by reference only), the Deployment and the NodePort Service.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, HTTPGetAction, PodSpec, Probe, Service, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

/// The app's environment. It connects as its own PostgreSQL role and Redis ACL user, which may do only what the
/// app does (`least-privilege/`). `DATABASE_URL` is assembled by Kubernetes from `$(APP_DB_PASSWORD)`, defined
/// before it, so no password is ever written into an object.
pub fn app_env(s: &Settings) -> Vec<EnvVar> {
    vec![
        env_from_secret("APP_DB_PASSWORD", secret_keys::APP_DB_PASSWORD),
        env(
            "DATABASE_URL",
            &format!(
                "postgres://{}:$(APP_DB_PASSWORD)@{}:{POSTGRES_PORT}/{}",
                names::APP_DATABASE_USER,
                names::POSTGRES,
                names::DATABASE
            ),
        ),
        env("REDIS_URL", &format!("redis://{}@{}:{REDIS_PORT}/", names::APP_REDIS_USER, names::REDIS)),
        env_from_secret("REDIS_PASSWORD", secret_keys::APP_REDIS_PASSWORD),
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
    let mut annotations = scrape_annotations(APP_PORT);
    if let Some(id) = &s.image_id {
        annotations.insert(IMAGE_ID_ANNOTATION.to_owned(), id.clone());
    }
    let workload = Workload {
        name: names::APP,
        component: "server",
        replicas: s.replicas,
        recreate: false,
        pod_annotations: Some(annotations),
        pod,
    };
    deployment(s, workload)
}

/// `cache-demo-app`: a NodePort on a fixed port, so the URL stays the same across re-deploys.
pub fn app_service(s: &Settings) -> Service {
    let mut service = cluster_service(s, names::APP, "server", "http", APP_PORT);
    // For a Prometheus that discovers Services rather than pods.
    service.metadata.annotations = Some(scrape_annotations(APP_PORT));
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
        for port in spec.ports.iter_mut().flatten() {
            port.node_port = Some(s.node_port);
        }
    }
    service
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::test_support::*;

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
        assert!(pos("APP_DB_PASSWORD") < pos("DATABASE_URL"));
        let value = |n: &str| c.env.iter().flatten().find(|e| e.name == n).and_then(|e| e.value.clone());
        assert_eq!(
            value("DATABASE_URL").as_deref(),
            Some("postgres://cache_demo_app:$(APP_DB_PASSWORD)@postgres:5432/cache_demo")
        );
        assert_eq!(value("REDIS_URL").as_deref(), Some("redis://cache-demo@redis:6379/"));
        assert!(!names.contains(&"POSTGRES_PASSWORD"), "the app never gets the superuser's password");
        assert_eq!(value("LOG_FORMAT").as_deref(), Some("json"));
        assert_eq!(value("CACHE_TTL_SECS").as_deref(), Some("30"));
        assert_eq!(value("DB_DELAY_MS").as_deref(), Some("200"));
        for (var, key) in [
            ("APP_DB_PASSWORD", "app-db-password"),
            ("REDIS_PASSWORD", "app-redis-password"),
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
}
