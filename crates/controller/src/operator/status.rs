//! What a CacheDemo's status says, decided by pure functions of what the operator observed: the three
//! Deployments with their pods and events, the app's `/api/stats`, the node address. The reconciler writes the
//! result only when it differs from what the object already says, so a quiet cluster sees no writes.

use cache_demo_api::Stats;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};

use crate::crd::{CacheDemoStatus, CacheFigures, ComponentStatus, Condition};
use crate::diagnose::{self, Hints};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// One component as observed.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub deployment: Option<Deployment>,
    pub pods: Vec<Pod>,
}

/// Everything the status is made from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub generation: Option<i64>,
    pub components: Vec<Component>,
    pub events: Vec<Event>,
    /// The cache figures: read now, kept from the last read, or unknown.
    pub figures: Figures,
    pub url: Option<String>,
    pub namespace: String,
    pub app_image: String,
}

/// Where the status' cache figures come from on this pass.
#[derive(Debug, Clone, Default)]
pub enum Figures {
    /// Read from the app's `/api/stats` just now (None: it did not answer).
    Read(Option<Box<Stats>>),
    /// The app was asked less than a refresh interval ago: what the status says stays. This is what stops the
    /// status write a reconcile makes from causing another reconcile that reads changed figures, and so on.
    Kept(CacheFigures),
    /// The app is not ready.
    #[default]
    Unknown,
}

/// Why a component is stuck (rather than still starting), as a condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub reason: &'static str,
    pub message: String,
}

/// A component that cannot become ready by waiting: a missing image, a crash loop, a failing probe, no room.
pub fn stuck(component: &Component, events: &[Event], hints: Hints<'_>) -> Option<Stuck> {
    let deployment = component.deployment.as_ref()?;
    if diagnose::is_ready(deployment) {
        return None;
    }
    let reason = match diagnose::short_state(&component.pods)?.as_str() {
        "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" => "ImageMissing",
        "CrashLoopBackOff" => "CrashLoop",
        "CreateContainerConfigError" | "CreateContainerError" => "ContainerConfig",
        "Unschedulable" => "Unschedulable",
        "waiting for readiness probe" if has_probe_warning(&component.pods, events) => "ProbeFailing",
        _ => return None,
    };
    let lines = diagnose::explain(Some(deployment), &component.pods, events, hints);
    let message = format!("deployment/{}: {}", component.name, lines.join("; "));
    Some(Stuck { reason, message })
}

fn has_probe_warning(pods: &[Pod], events: &[Event]) -> bool {
    let names: Vec<&str> = pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
    events.iter().any(|e| {
        e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some("Unhealthy")
            && e.involved_object.name.as_deref().is_some_and(|n| names.contains(&n))
    })
}

/// The status for what was observed; conditions keep their transition time while their status holds.
pub fn build(observed: &Observed, previous: &CacheDemoStatus, now: &str) -> CacheDemoStatus {
    let hints = Hints { namespace: &observed.namespace, app_image: &observed.app_image };
    let mut components = Vec::new();
    let mut ready_count = 0;
    let mut stuck_ones = Vec::new();
    let mut waiting = Vec::new();
    for c in &observed.components {
        let (ready, desired, is_ready) = match &c.deployment {
            Some(d) => {
                let r = diagnose::replicas(d);
                (r.ready.min(r.desired), r.desired, diagnose::is_ready(d))
            }
            None => (0, 0, false),
        };
        components.push(ComponentStatus { name: c.name.clone(), ready, desired });
        if is_ready {
            ready_count += 1;
        } else if let Some(s) = stuck(c, &observed.events, hints) {
            stuck_ones.push(s);
        } else {
            let state = match &c.deployment {
                Some(d) => diagnose::summary(d),
                None => "not created yet".into(),
            };
            waiting.push(format!("{} {state}", c.name));
        }
    }
    let total = observed.components.len();
    let all_ready = total > 0 && ready_count == total;
    let generation = observed.generation;
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        let kept = previous.conditions.iter().find(|c| c.type_ == type_ && c.status == status);
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: kept.map(|c| c.last_transition_time.clone()).unwrap_or_else(|| now.into()),
            observed_generation: generation,
        }
    };
    let ready = match all_ready {
        true => condition(READY, true, "AllReady", "PostgreSQL, Redis and the app are ready".into()),
        false => {
            let what: Vec<String> = stuck_ones.iter().map(|s| s.message.clone()).chain(waiting.clone()).collect();
            condition(READY, false, "NotReady", format!("{ready_count}/{total} ready: {}", what.join("; ")))
        }
    };
    let progressing = match (all_ready, stuck_ones.is_empty()) {
        (true, _) => condition(PROGRESSING, false, "Settled", "nothing is rolling out".into()),
        (false, true) => condition(PROGRESSING, true, "RollingOut", format!("waiting for {}", waiting.join(", "))),
        (false, false) => condition(PROGRESSING, false, "Stuck", "waiting cannot help: see Degraded".into()),
    };
    let degraded = match stuck_ones.first() {
        Some(s) => condition(
            DEGRADED,
            true,
            s.reason,
            stuck_ones.iter().map(|s| s.message.as_str()).collect::<Vec<_>>().join("; "),
        ),
        None => condition(DEGRADED, false, "Healthy", "no component is stuck".into()),
    };
    CacheDemoStatus {
        observed_generation: generation,
        conditions: vec![ready, progressing, degraded],
        ready: Some(format!("{ready_count}/{total}")),
        components,
        url: observed.url.clone(),
        cache: Some(match &observed.figures {
            Figures::Read(stats) => figures(stats.as_deref()),
            Figures::Kept(kept) => kept.clone(),
            Figures::Unknown => figures(None),
        }),
    }
}

/// The status of a CacheDemo that cannot be deployed (`InvalidSpec`, `Conflict`): nothing was applied, the
/// figures stay as they were.
pub fn blocked(
    previous: &CacheDemoStatus,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: &str,
) -> CacheDemoStatus {
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        let kept = previous.conditions.iter().find(|c| c.type_ == type_ && c.status == status && c.reason == reason);
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: kept.map(|c| c.last_transition_time.clone()).unwrap_or_else(|| now.into()),
            observed_generation: generation,
        }
    };
    CacheDemoStatus {
        observed_generation: generation,
        conditions: vec![
            condition(READY, "False", reason, message),
            condition(PROGRESSING, "False", reason, "nothing is applied until this is resolved"),
            condition(DEGRADED, "True", reason, message),
        ],
        ..previous.clone()
    }
}

/// The status' cache figures; every one `unknown` when the app could not be asked.
pub fn figures(stats: Option<&Stats>) -> CacheFigures {
    let unknown = || "unknown".to_string();
    let Some(stats) = stats else {
        return CacheFigures { hit_ratio: unknown(), keys: unknown(), memory: unknown(), evicted_keys: unknown() };
    };
    let memory = match (stats.redis.info.used_memory, stats.redis.info.maxmemory) {
        (Some(used), Some(max)) if max > 0 => format!("{}/{}", binary_size(used), binary_size(max)),
        (Some(used), _) => format!("{}/unbounded", binary_size(used)),
        _ => unknown(),
    };
    CacheFigures {
        hit_ratio: stats.counters.hit_rate.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "-".into()),
        keys: stats.keys.map(|k| k.to_string()).unwrap_or_else(unknown),
        memory,
        evicted_keys: stats.redis.info.evicted_keys.map(|k| k.to_string()).unwrap_or_else(unknown),
    }
}

/// `1.2Mi`, `64Mi`, `512Ki`: Kubernetes' binary suffixes, one decimal where it is not whole.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() < 0.05 { format!("{value:.0}{}", UNITS[unit]) } else { format!("{value:.1}{}", UNITS[unit]) }
}

/// The conditions whose status changed from `previous` to `next`: each becomes an Event.
pub fn transitions<'a>(previous: &CacheDemoStatus, next: &'a CacheDemoStatus) -> Vec<&'a Condition> {
    next.conditions
        .iter()
        .filter(|c| {
            !previous.conditions.iter().any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deployment(name: &str, ready: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta { name: Some(name.into()), generation: Some(1), ..Default::default() },
            spec: Some(Default::default()),
            status: Some(DeploymentStatus {
                observed_generation: Some(1),
                replicas: Some(1),
                updated_replicas: Some(1),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                ..Default::default()
            }),
        }
    }

    fn waiting_pod(reason: &str) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("cache-demo-app-1".into()), ..Default::default() },
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "app".into(),
                    image: "cache-demo-app:latest".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: None }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn observed(app: Deployment, pods: Vec<Pod>) -> Observed {
        let component = |name: &str, d: Deployment, pods| Component { name: name.into(), deployment: Some(d), pods };
        Observed {
            generation: Some(3),
            components: vec![
                component("postgres", deployment("postgres", 1), vec![]),
                component("redis", deployment("redis", 1), vec![]),
                component("cache-demo-app", app, pods),
            ],
            namespace: "redis-demo".into(),
            app_image: "cache-demo-app:latest".into(),
            ..Observed::default()
        }
    }

    fn condition<'a>(status: &'a CacheDemoStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn all_ready_is_ready_and_settled() {
        let status = build(&observed(deployment("cache-demo-app", 1), vec![]), &CacheDemoStatus::default(), "t1");
        assert_eq!(condition(&status, READY).status, "True");
        assert_eq!(condition(&status, PROGRESSING).status, "False");
        assert_eq!(condition(&status, DEGRADED).status, "False");
        assert_eq!(status.ready.as_deref(), Some("3/3"));
        assert_eq!(status.observed_generation, Some(3));
        assert!(status.conditions.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn a_missing_image_is_degraded_with_the_fix() {
        let o = observed(deployment("cache-demo-app", 0), vec![waiting_pod("ErrImageNeverPull")]);
        let status = build(&o, &CacheDemoStatus::default(), "t1");
        let degraded = condition(&status, DEGRADED);
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ImageMissing"));
        assert!(degraded.message.contains("make image"), "{}", degraded.message);
        assert_eq!(condition(&status, READY).status, "False");
        assert_eq!(condition(&status, PROGRESSING).reason, "Stuck");
        assert_eq!(status.ready.as_deref(), Some("2/3"));
    }

    #[test]
    fn starting_pods_are_progressing_not_degraded() {
        let o = observed(deployment("cache-demo-app", 0), vec![waiting_pod("ContainerCreating")]);
        let status = build(&o, &CacheDemoStatus::default(), "t1");
        assert_eq!(condition(&status, PROGRESSING).status, "True");
        assert_eq!(condition(&status, DEGRADED).status, "False");
    }

    #[test]
    fn transition_times_hold_while_the_status_holds() {
        let o = observed(deployment("cache-demo-app", 1), vec![]);
        let first = build(&o, &CacheDemoStatus::default(), "t1");
        let second = build(&o, &first, "t2");
        assert_eq!(first, second, "nothing changed, so nothing to write");
        assert!(transitions(&first, &second).is_empty());
        let broken =
            build(&observed(deployment("cache-demo-app", 0), vec![waiting_pod("CrashLoopBackOff")]), &second, "t3");
        assert_eq!(condition(&broken, DEGRADED).last_transition_time, "t3");
        let changed: Vec<_> = transitions(&second, &broken).iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(changed, [READY, PROGRESSING, DEGRADED]);
    }

    #[test]
    fn figures_are_measured_or_unknown() {
        let stats: Stats = serde_json::from_value(serde_json::json!({
            "hits": 935, "misses": 65, "hit_rate": 0.935, "keys": 42,
            "redis": {"available": true, "used_memory": 1_258_291, "maxmemory": 64 << 20, "evicted_keys": 0},
        }))
        .unwrap();
        let f = figures(Some(&stats));
        assert_eq!((f.hit_ratio.as_str(), f.keys.as_str(), f.memory.as_str()), ("93.5%", "42", "1.2Mi/64Mi"));
        let f = figures(Some(&Stats::default()));
        assert_eq!((f.hit_ratio.as_str(), f.keys.as_str()), ("-", "unknown"));
        let f = figures(None);
        assert!([f.hit_ratio, f.keys, f.memory, f.evicted_keys].iter().all(|v| v == "unknown"));
        let parsed: Stats = serde_json::from_str(
            r#"{"hits":3,"misses":1,"hit_rate":0.75,"keys":4,"redis":{"available":true,"used_memory":2048,"maxmemory":0}}"#,
        )
        .unwrap();
        assert_eq!(figures(Some(&parsed)).memory, "2Ki/unbounded");
    }
}
