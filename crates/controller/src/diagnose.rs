//! Whether a Deployment is ready, and if not, why, in words a user can act on. Pure functions of the objects
//! the API returned (the Deployment, its pods, their events), so every message is unit-tested.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

/// What the messages need to know beyond the objects.
#[derive(Debug, Clone, Copy)]
pub struct Hints<'a> {
    pub namespace: &'a str,
    /// The app image: when it is missing, the fix is `make image`, not the network.
    pub app_image: &'a str,
}

/// Replica counts of a Deployment, as `status` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    pub desired: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
    /// Pods of any version still running (old ones linger during a rollout).
    pub current: i32,
    /// The controller has seen the newest spec.
    pub observed: bool,
}

pub fn replicas(d: &Deployment) -> Replicas {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let observed = match (d.metadata.generation, status.observed_generation) {
        (Some(generation), Some(observed)) => observed >= generation,
        (Some(_), None) => false,
        (None, _) => true,
    };
    Replicas {
        desired,
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        current: status.replicas.unwrap_or(0),
        observed,
    }
}

/// Ready means rolled out: the newest spec observed, every desired pod updated, ready and available, and no
/// old pod left.
pub fn is_ready(d: &Deployment) -> bool {
    let r = replicas(d);
    r.observed && r.updated >= r.desired && r.ready >= r.desired && r.available >= r.desired && r.current <= r.desired
}

/// `1/1 ready`.
pub fn summary(d: &Deployment) -> String {
    let r = replicas(d);
    format!("{}/{} ready", r.ready.min(r.desired), r.desired)
}

/// The most telling waiting or failing state among the pods, for a progress line (`ImagePullBackOff`).
pub fn short_state(pods: &[Pod]) -> Option<String> {
    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    for pod in &live {
        for c in container_statuses(pod) {
            if let Some(reason) = c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone()) {
                return Some(reason);
            }
        }
    }
    for pod in &live {
        if let Some(reason) = unscheduled(pod).map(|(reason, _)| reason) {
            return Some(reason);
        }
        if container_statuses(pod).any(|c| running(c) && !c.ready) {
            return Some("waiting for readiness probe".into());
        }
    }
    live.first().and_then(|p| p.status.as_ref()).and_then(|s| s.phase.clone())
}

/// One line per problem found, each naming the pod and saying what to do.
pub fn explain(deployment: Option<&Deployment>, pods: &[Pod], events: &[Event], hints: Hints<'_>) -> Vec<String> {
    let ns = hints.namespace;
    let Some(deployment) = deployment else {
        return vec!["the Deployment does not exist (deleted while waiting?)".into()];
    };
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    if live.is_empty() {
        let failure = deployment
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.status == "False" || c.type_ == "ReplicaFailure")
            .and_then(|c| c.message.clone());
        return vec![match failure {
            Some(message) => format!("no pod of deployment/{name} exists: {message}"),
            None => format!(
                "no pod of deployment/{name} exists yet: see `kubectl describe deploy/{name} -n {ns}` and \
                 `kubectl get events -n {ns}`"
            ),
        }];
    }

    let mut lines = Vec::new();
    for pod in live {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let warning = last_warning(events, pod_name);
        if let Some((reason, message)) = unscheduled(pod) {
            lines.push(format!(
                "pod {pod_name} cannot be scheduled ({reason}): {message}; the cluster lacks room for its \
                 resource requests (minikube: `minikube start --memory 4g --cpus 2`)"
            ));
            continue;
        }
        let mut found = false;
        for c in container_statuses(pod) {
            let image = if c.image.is_empty() { spec_image(pod, &c.name) } else { c.image.clone() };
            if let Some(line) = explain_container(pod_name, c, &image, warning.as_deref(), hints) {
                lines.push(line);
                found = true;
            }
        }
        if !found {
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
            let detail = warning.map(|w| format!(": {w}")).unwrap_or_default();
            lines.push(format!(
                "pod {pod_name} is {phase} and not ready yet{detail}; see `kubectl describe pod {pod_name} -n {ns}`"
            ));
        }
    }
    lines
}

fn explain_container(
    pod: &str,
    c: &ContainerStatus,
    image: &str,
    warning: Option<&str>,
    hints: Hints<'_>,
) -> Option<String> {
    let ns = hints.namespace;
    let container = &c.name;
    let state = c.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or("Waiting");
        let message = waiting.message.as_deref().or(warning).map(|m| format!(": {m}")).unwrap_or_default();
        let line = match reason {
            "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" => {
                if same_image(image, hints.app_image) {
                    format!(
                        "pod {pod}: image {} is not in the cluster ({reason}): run `make deploy` (it builds the \
                         image where minikube's node runs it), or `make image` then `cache-demo-ctl up` again",
                        hints.app_image
                    )
                } else {
                    format!(
                        "pod {pod}: cannot pull image {image} ({reason}{message}): check the cluster's access to the \
                         registry (`minikube ssh -- docker pull {image}`)"
                    )
                }
            }
            "CrashLoopBackOff" => {
                let last = c
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| {
                        format!(", last exit code {} ({})", t.exit_code, t.reason.as_deref().unwrap_or("terminated"))
                    })
                    .unwrap_or_default();
                format!(
                    "pod {pod}: container {container} keeps crashing (CrashLoopBackOff, {} restarts{last}): see \
                     `kubectl logs {pod} -c {container} -n {ns} --previous`",
                    c.restart_count
                )
            }
            "CreateContainerConfigError" | "CreateContainerError" => format!(
                "pod {pod}: container {container} cannot be created ({reason}{message}): is Secret \
                 cache-demo-credentials complete? `cache-demo-ctl up` adds missing keys"
            ),
            "ContainerCreating" | "PodInitializing" => format!(
                "pod {pod}: container {container} is still being created ({reason}{message}): a first image pull \
                 can take minutes, try a longer --timeout"
            ),
            _ => format!(
                "pod {pod}: container {container} is waiting ({reason}{message}); see `kubectl describe pod {pod} -n \
                 {ns}`"
            ),
        };
        return Some(line);
    }
    if let Some(terminated) = &state.terminated {
        return Some(format!(
            "pod {pod}: container {container} exited with code {} ({}): see `kubectl logs {pod} -c {container} -n \
             {ns}`",
            terminated.exit_code,
            terminated.reason.as_deref().unwrap_or("terminated")
        ));
    }
    if running(c) && !c.ready {
        let detail = warning.map(|w| format!(" ({w})")).unwrap_or_default();
        return Some(format!(
            "pod {pod}: container {container} is running but its readiness probe is failing{detail}: see `kubectl \
             logs {pod} -c {container} -n {ns}` and `kubectl describe pod {pod} -n {ns}`"
        ));
    }
    None
}

fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
    let main = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
    init.chain(main)
}

fn spec_image(pod: &Pod, container: &str) -> String {
    let spec = pod.spec.as_ref();
    let init = spec.and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
    let main = spec.map(|s| s.containers.iter()).into_iter().flatten();
    init.chain(main).find(|c| c.name == container).and_then(|c| c.image.clone()).unwrap_or_default()
}

fn running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// `(reason, message)` of a `PodScheduled=False` condition.
fn unscheduled(pod: &Pod) -> Option<(String, String)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some((c.reason.clone().unwrap_or_else(|| "Unschedulable".into()), c.message.clone().unwrap_or_default()))
}

/// The newest Warning event about a pod, as `Reason: message`.
fn last_warning(events: &[Event], pod: &str) -> Option<String> {
    events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod) && e.type_.as_deref() == Some("Warning"))
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0).or_else(|| e.event_time.as_ref().map(|t| t.0)))
        .map(|e| {
            let reason = e.reason.as_deref().unwrap_or("Warning");
            let message = e.message.as_deref().unwrap_or_default().trim();
            format!("{reason}: {message}")
        })
}

/// Runtimes report `docker.io/library/cache-demo-app:latest` for `cache-demo-app:latest`.
fn same_image(reported: &str, wanted: &str) -> bool {
    let normal = |s: &str| {
        let s = s.strip_prefix("docker.io/").unwrap_or(s);
        let s = s.strip_prefix("library/").unwrap_or(s);
        if s.rsplit('/').next().is_some_and(|last| last.contains(':') || last.contains('@')) {
            s.to_owned()
        } else {
            format!("{s}:latest")
        }
    };
    normal(reported) == normal(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HINTS: Hints<'static> = Hints { namespace: "redis-demo", app_image: "cache-demo-app:latest" };

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cache-demo-app", "generation": 2},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "cache-demo-app-7d9f-abcde"},
            "spec": {"containers": [{"name": "app", "image": "cache-demo-app:latest"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(image: &str, reason: &str, message: &str) -> Pod {
        pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}},
        }]}))
    }

    #[test]
    fn ready_needs_the_current_generation_rolled_out() {
        let ready = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                           "availableReplicas": 1});
        assert!(is_ready(&deployment(ready.clone())));
        let mut stale = ready.clone();
        stale["observedGeneration"] = json!(1);
        assert!(!is_ready(&deployment(stale)));
        let mut old_pod_left = ready.clone();
        old_pod_left["replicas"] = json!(2);
        assert!(!is_ready(&deployment(old_pod_left)));
        assert!(!is_ready(&deployment(json!({"observedGeneration": 2, "replicas": 1}))));
        assert_eq!(summary(&deployment(json!({"readyReplicas": 0}))), "0/1 ready");
    }

    #[test]
    fn missing_app_image_says_to_build_it_into_minikube() {
        for reason in ["ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull"] {
            let pods = [waiting("docker.io/library/cache-demo-app:latest", reason, "")];
            let lines = explain(Some(&deployment(json!({}))), &pods, &[], HINTS);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].contains("cache-demo-app-7d9f-abcde"), "{}", lines[0]);
            assert!(lines[0].contains("image cache-demo-app:latest is not in the cluster"), "{}", lines[0]);
            assert!(lines[0].contains("make image") && lines[0].contains("make deploy"), "{}", lines[0]);
        }
        assert_eq!(
            short_state(&[waiting("cache-demo-app:latest", "ErrImagePull", "")]).as_deref(),
            Some("ErrImagePull")
        );
    }

    #[test]
    fn other_images_that_cannot_be_pulled_point_at_the_registry() {
        let pods = [waiting("postgres:17-alpine", "ImagePullBackOff", "Back-off pulling image")];
        let lines = explain(Some(&deployment(json!({}))), &pods, &[], HINTS);
        assert!(lines[0].contains("cannot pull image postgres:17-alpine"), "{}", lines[0]);
        assert!(!lines[0].contains("make image"), "{}", lines[0]);
    }

    #[test]
    fn crash_loop_points_at_the_previous_logs() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "image": "cache-demo-app:latest", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }]}));
        let lines = explain(Some(&deployment(json!({}))), &[p], &[], HINTS);
        assert!(lines[0].contains("keeps crashing (CrashLoopBackOff, 4 restarts, last exit code 1 (Error))"));
        assert!(lines[0].contains("kubectl logs cache-demo-app-7d9f-abcde -c app -n redis-demo --previous"));
    }

    #[test]
    fn failing_readiness_probe_quotes_the_event() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "image": "cache-demo-app:latest", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"running": {}},
        }]}));
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1"}, "type": "Warning", "reason": "Unhealthy",
            "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
            "involvedObject": {"kind": "Pod", "name": "cache-demo-app-7d9f-abcde"},
        }))
        .unwrap();
        let lines = explain(Some(&deployment(json!({}))), std::slice::from_ref(&p), &[event], HINTS);
        assert!(lines[0].contains("readiness probe is failing"), "{}", lines[0]);
        assert!(lines[0].contains("statuscode: 503"), "{}", lines[0]);
        assert_eq!(short_state(&[p]).as_deref(), Some("waiting for readiness probe"));
    }

    #[test]
    fn unschedulable_pods_say_so() {
        let p = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient memory.",
        }]}));
        let lines = explain(Some(&deployment(json!({}))), &[p], &[], HINTS);
        assert!(lines[0].contains("cannot be scheduled (Unschedulable): 0/1 nodes are available"), "{}", lines[0]);
    }

    #[test]
    fn no_pods_reports_the_deployment_condition() {
        let d = deployment(json!({"conditions": [{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\"",
        }]}));
        let lines = explain(Some(&d), &[], &[], HINTS);
        assert!(lines[0].starts_with("no pod of deployment/cache-demo-app exists: pods"), "{}", lines[0]);
        assert!(explain(None, &[], &[], HINTS)[0].contains("does not exist"));
    }
}
