//! Redis: bounded memory, an eviction policy, the password from the Secret, no persistence; its Service and the
//! NetworkPolicy that admits only the app.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, PodSpec, Probe, Service, TCPSocketAction, Volume};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

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
    let workload =
        Workload { name: names::REDIS, component: "cache", replicas: 1, recreate: false, pod_annotations: None, pod };
    deployment(s, workload)
}

pub fn redis_service(s: &Settings) -> Service {
    cluster_service(s, names::REDIS, "cache", "redis", REDIS_PORT)
}

/// Redis accepts connections from the app's pods only.
pub fn redis_network_policy(s: &Settings) -> NetworkPolicy {
    allow_app_only(s, names::REDIS_POLICY, names::REDIS, "cache", REDIS_PORT)
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
}
