//! Redis: bounded memory, an eviction policy, the password from the Secret, no persistence, and (by default)
//! redis_exporter beside it for Prometheus; its Service and the NetworkPolicy that admits only the app to Redis
//! (and anyone to the exporter's metrics).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PodSpec, Probe, Service, ServicePort, TCPSocketAction, Volume,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

/// The rules of the app's Redis ACL user (`least-privilege/redis-acl.txt`).
pub const REDIS_ACL: &str = include_str!("../../../../least-privilege/redis-acl.txt");

/// How Redis starts: the passwords of the `default` user (a person's `redis-cli`) and of the app's ACL user go
/// from the environment into a config file on the pod's own volume, so no password is in any argv; then
/// `redis-server` with that file and [`redis_args`].
pub fn redis_command() -> Vec<String> {
    let script = format!(
        "umask 077 && printf 'requirepass %s\\nuser {user} reset on >%s %s\\n' \"$REDIS_PASSWORD\" \
         \"$APP_REDIS_PASSWORD\" '{acl}' > /data/auth.conf && exec redis-server /data/auth.conf \"$@\"",
        user = names::APP_REDIS_USER,
        acl = REDIS_ACL.trim(),
    );
    vec!["sh".into(), "-c".into(), script, "redis-server".into()]
}

/// The arguments of `redis-server` after its auth config: memory bound and eviction policy from the settings,
/// and no persistence (a cache that survives nothing).
pub fn redis_args(s: &Settings) -> Vec<String> {
    ["--maxmemory", &s.redis_maxmemory, "--maxmemory-policy", &s.redis_policy, "--save", "", "--appendonly", "no"]
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
        command: Some(redis_command()),
        args: Some(redis_args(s)),
        ports: Some(vec![container_port("redis", REDIS_PORT)]),
        env: Some(vec![
            env_from_secret("REDIS_PASSWORD", secret_keys::REDIS_PASSWORD),
            env_from_secret("APP_REDIS_PASSWORD", secret_keys::APP_REDIS_PASSWORD),
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
    let mut containers = vec![container];
    containers.extend(s.redis_exporter.then(|| redis_exporter(s)));
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(pod_security(REDIS_UID, REDIS_GID)),
        containers,
        volumes: Some(vec![Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    let workload = Workload {
        name: names::REDIS,
        component: "cache",
        replicas: 1,
        recreate: false,
        pod_annotations: Some(redis_pod_annotations(s)),
        pod,
    };
    deployment(s, workload)
}

/// `kubectl exec deploy/redis -- redis-cli` and `kubectl logs` reach Redis, not the exporter, without asking;
/// Prometheus finds the exporter.
fn redis_pod_annotations(s: &Settings) -> BTreeMap<String, String> {
    let mut annotations = match s.redis_exporter {
        true => scrape_annotations(REDIS_EXPORTER_PORT),
        false => BTreeMap::new(),
    };
    annotations.insert("kubectl.kubernetes.io/default-container".into(), names::REDIS.into());
    annotations
}

/// redis_exporter on `localhost`, logged in with the password from the Secret through its environment (never
/// in argv, where `ps` and the pod spec would show it).
fn redis_exporter(s: &Settings) -> Container {
    Container {
        name: "redis-exporter".into(),
        image: Some(s.redis_exporter_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(vec![
            env("REDIS_ADDR", &format!("redis://localhost:{REDIS_PORT}")),
            env_from_secret("REDIS_PASSWORD", secret_keys::REDIS_PASSWORD),
        ]),
        ports: Some(vec![container_port("metrics", REDIS_EXPORTER_PORT)]),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("metrics".into()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(10),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: Some(resources(("10m", "32Mi"), ("100m", "64Mi"))),
        security_context: Some(container_security(true)),
        ..Container::default()
    }
}

pub fn redis_service(s: &Settings) -> Service {
    let mut service = cluster_service(s, names::REDIS, "cache", "redis", REDIS_PORT);
    if s.redis_exporter
        && let Some(ports) = service.spec.as_mut().and_then(|spec| spec.ports.as_mut())
    {
        ports.push(ServicePort {
            name: Some("metrics".into()),
            port: REDIS_EXPORTER_PORT,
            target_port: Some(IntOrString::String("metrics".into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        });
        service.metadata.annotations = Some(scrape_annotations(REDIS_EXPORTER_PORT));
    }
    service
}

/// Redis accepts connections from the app's pods only; the exporter's metrics, which hold no data and no
/// secret, from anywhere (a Prometheus may live in any namespace).
pub fn redis_network_policy(s: &Settings) -> NetworkPolicy {
    let mut policy = allow_app_only(s, names::REDIS_POLICY, names::REDIS, "cache", REDIS_PORT);
    if s.redis_exporter
        && let Some(rules) = policy.spec.as_mut().and_then(|spec| spec.ingress.as_mut())
    {
        rules.push(NetworkPolicyIngressRule {
            from: None,
            ports: Some(vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(REDIS_EXPORTER_PORT)),
                protocol: Some("TCP".into()),
                ..NetworkPolicyPort::default()
            }]),
        });
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::test_support::*;

    #[test]
    fn redis_is_bounded_evicts_lru_and_takes_its_password_from_the_secret() {
        let d = redis_deployment(&Settings::default());
        let c = container(&d);
        let args = c.args.clone().unwrap();
        let after = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].as_str());
        assert_eq!(after("--maxmemory"), Some("64mb"));
        assert_eq!(after("--maxmemory-policy"), Some("allkeys-lru"));
        assert!(!args.iter().any(|a| a.contains("PASSWORD")), "no password in argv: {args:?}");
        let command = c.command.clone().unwrap().join(" ");
        assert!(command.contains("requirepass %s") && command.contains("\"$REDIS_PASSWORD\""), "{command}");
        assert!(command.contains("user cache-demo reset on >%s") && command.contains("~cache-demo:*"), "{command}");
        assert!(command.ends_with("exec redis-server /data/auth.conf \"$@\" redis-server"), "{command}");
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
    fn the_exporter_logs_in_from_the_environment_and_is_scraped() {
        let s = Settings::default();
        let d = redis_deployment(&s);
        let template = d.spec.as_ref().unwrap().template.clone();
        let exporter = template.spec.as_ref().unwrap().containers[1].clone();
        assert_eq!(exporter.name, "redis-exporter");
        assert_eq!(exporter.image.as_deref(), Some(crate::settings::DEFAULT_REDIS_EXPORTER_IMAGE));
        let r = secret_ref(&exporter, "REDIS_PASSWORD").unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), ("cache-demo-credentials", "redis-password"));
        assert!(exporter.args.is_none() && exporter.command.is_none(), "nothing in argv: {exporter:?}");
        assert_eq!(exporter.ports.as_ref().unwrap()[0].container_port, 9121);
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_eq!(
            (annotations["prometheus.io/scrape"].as_str(), annotations["prometheus.io/port"].as_str()),
            ("true", "9121")
        );

        let service = redis_service(&s);
        let ports: Vec<i32> = service.spec.unwrap().ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [6379, 9121]);
        assert_eq!(service.metadata.annotations.unwrap()["prometheus.io/port"], "9121");
        let rules = redis_network_policy(&s).spec.unwrap().ingress.unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[1].from.is_none(), "metrics are open to any scraper");
        assert_eq!(rules[1].ports.clone().unwrap()[0].port, Some(IntOrString::Int(9121)));
    }

    #[test]
    fn without_the_exporter_redis_stands_alone() {
        let s = Settings { redis_exporter: false, ..Settings::default() };
        let d = redis_deployment(&s);
        let template = d.spec.unwrap().template;
        assert_eq!(template.spec.unwrap().containers.len(), 1);
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["kubectl.kubernetes.io/default-container"]);
        let service = redis_service(&s);
        assert_eq!(service.spec.unwrap().ports.unwrap().len(), 1);
        assert!(service.metadata.annotations.is_none());
        assert_eq!(redis_network_policy(&s).spec.unwrap().ingress.unwrap().len(), 1);
    }
}
