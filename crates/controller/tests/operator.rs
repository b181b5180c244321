//! The operator (kube-runtime's Controller with cache-demo's reconciler) against the in-memory API server in
//! `support/`, watch included: a CacheDemo gets every child and turns Ready; a quiet pass writes nothing; a
//! deleted child comes back; an edited one is reverted; a spec change touches only what it affects; a stuck pod
//! is Degraded with the reason; deleting the CacheDemo deletes its children. Every wait is bounded.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use cache_demo_ctl::operator::{self, Config};
use serde_json::{Value, json};
use support::{FakeCluster, NODE_IP, Rollout};
use tokio::task::JoinHandle;

const NS: &str = "/api/v1/namespaces/redis-demo";
const APPS: &str = "/apis/apps/v1/namespaces/redis-demo/deployments";
const DEMOS: &str = "/apis/cache-demo.dev/v1alpha1/namespaces/redis-demo/cachedemos";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/redis-demo/events";

/// A cluster with namespace redis-demo, a CacheDemo `demo` with `spec`, and the operator running.
struct Running {
    cluster: FakeCluster,
    operator: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.operator.abort();
    }
}

fn demo(name: &str, spec: Value, created: &str) -> Value {
    json!({
        "apiVersion": "cache-demo.dev/v1alpha1", "kind": "CacheDemo",
        "metadata": {"name": name, "namespace": "redis-demo", "uid": format!("uid-demo-{name}"), "generation": 1,
                     "creationTimestamp": created},
        "spec": spec,
    })
}

fn start(spec: Value) -> Running {
    start_with(spec, Duration::from_millis(100))
}

/// [`start`] with the operator's refresh interval (`requeue`).
fn start_with(spec: Value, requeue: Duration) -> Running {
    let cluster = FakeCluster::new();
    cluster.insert(
        NS,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "redis-demo"},
                              "status": {"phase": "Active"}}),
    );
    cluster.set_app_stats(Some(json!({
        "hits": 90, "misses": 10, "hit_rate": 0.9, "keys": 12,
        "redis": {"available": true, "used_memory": 1_258_291, "maxmemory": 67_108_864, "evicted_keys": 0},
    })));
    cluster.insert(&format!("{DEMOS}/demo"), demo("demo", spec, "2026-01-01T00:00:00Z"));
    let operator = run_operator_with(&cluster, requeue);
    Running { cluster, operator }
}

fn run_operator(cluster: &FakeCluster) -> JoinHandle<()> {
    run_operator_with(cluster, Duration::from_millis(100))
}

fn run_operator_with(cluster: &FakeCluster, requeue: Duration) -> JoinHandle<()> {
    let config = Config {
        namespace: "redis-demo".into(),
        requeue,
        requeue_progressing: Duration::from_millis(20),
        stats_timeout: Duration::from_millis(500),
    };
    let ctx = operator::context(cluster.client(), config, "test");
    tokio::spawn(operator::run(ctx, std::future::pending()))
}

/// Polls until `check` returns Some, for at most 10 s.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn condition(demo: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = demo["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((field("status"), field("reason"), field("message")))
}

impl Running {
    fn demo(&self) -> Value {
        self.cluster.get(&format!("{DEMOS}/demo")).unwrap_or(Value::Null)
    }

    async fn ready(&self) -> Value {
        eventually("Ready=True", || {
            let demo = self.demo();
            (condition(&demo, "Ready")?.0 == "True").then_some(demo)
        })
        .await
    }

    /// The resourceVersion of every object but pods and events, which the cluster itself changes.
    fn versions(&self) -> BTreeMap<String, String> {
        let mut versions = self.cluster.resource_versions();
        versions.retain(|path, _| !path.contains("/pods/") && !path.contains("/events/"));
        versions
    }
}

const CHILDREN: [&str; 10] = [
    "/api/v1/namespaces/redis-demo/secrets/cache-demo-credentials",
    "/api/v1/namespaces/redis-demo/configmaps/postgres-init-sql",
    "/apis/apps/v1/namespaces/redis-demo/deployments/postgres",
    "/api/v1/namespaces/redis-demo/services/postgres",
    "/apis/networking.k8s.io/v1/namespaces/redis-demo/networkpolicies/postgres-allow-app",
    "/apis/apps/v1/namespaces/redis-demo/deployments/redis",
    "/api/v1/namespaces/redis-demo/services/redis",
    "/apis/networking.k8s.io/v1/namespaces/redis-demo/networkpolicies/redis-allow-app",
    "/apis/apps/v1/namespaces/redis-demo/deployments/cache-demo-app",
    "/api/v1/namespaces/redis-demo/services/cache-demo-app",
];

async fn with_timeout<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("test took over 20 s")
}

#[tokio::test]
async fn a_cache_demo_gets_every_child_owned_and_turns_ready_with_live_figures() {
    with_timeout(async {
        let running = start(json!({}));
        let demo = running.ready().await;
        for path in CHILDREN {
            let child = running.cluster.get(path).unwrap_or_else(|| panic!("{path} missing"));
            let owner = &child["metadata"]["ownerReferences"][0];
            assert_eq!((owner["kind"].as_str(), owner["name"].as_str()), (Some("CacheDemo"), Some("demo")), "{path}");
            assert_eq!(owner["uid"], "uid-demo-demo");
            assert_eq!(owner["controller"], true);
        }
        let status = &demo["status"];
        assert_eq!(status["ready"], "3/3");
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status["url"], format!("http://{NODE_IP}:30080/"));
        let figures = eventually("cache figures", || {
            let demo = running.demo();
            (demo["status"]["cache"]["hitRatio"] == "90.0%").then(|| demo["status"]["cache"].clone())
        })
        .await;
        assert_eq!(figures["keys"], "12");
        assert_eq!(figures["memory"], "1.2Mi/64Mi");
        assert_eq!(condition(&demo, "Degraded").unwrap().0, "False");
        let events: Vec<Value> = running
            .cluster
            .paths()
            .iter()
            .filter(|p| p.starts_with(EVENTS))
            .filter_map(|p| running.cluster.get(p))
            .collect();
        assert!(
            events
                .iter()
                .any(|e| e["reason"] == "Applied" && e["note"].as_str().unwrap().contains("created deployment/redis")),
            "{events:?}"
        );
        assert!(events.iter().any(|e| e["reason"] == "AllReady" && e["type"] == "Normal"), "{events:?}");
    })
    .await;
}

#[tokio::test]
async fn a_pass_with_nothing_to_do_writes_nothing() {
    with_timeout(async {
        let running = start(json!({}));
        running.ready().await;
        eventually("figures", || (running.demo()["status"]["cache"]["keys"] == "12").then_some(())).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = running.versions();
        running.cluster.clear_requests();
        // Several requeues (100 ms) later:
        tokio::time::sleep(Duration::from_millis(500)).await;
        let requests = running.cluster.requests();
        assert!(requests.iter().any(|r| r.method == "PATCH"), "the operator did not look again");
        assert_eq!(running.versions(), before, "an object changed");
        let writes: Vec<String> = requests
            .iter()
            .filter(|r| r.path.ends_with("/status") || r.method == "POST" || r.path.starts_with(EVENTS))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "{writes:?}");
    })
    .await;
}

#[tokio::test]
async fn a_deleted_child_comes_back() {
    with_timeout(async {
        let running = start(json!({}));
        running.ready().await;
        let redis = format!("{APPS}/redis");
        running.cluster.remove(&redis);
        assert!(running.cluster.get(&redis).is_none());
        eventually("deployment/redis restored", || running.cluster.get(&redis)).await;
        let service = "/api/v1/namespaces/redis-demo/services/cache-demo-app";
        running.cluster.remove(service);
        eventually("service/cache-demo-app restored", || running.cluster.get(service)).await;
    })
    .await;
}

#[tokio::test]
async fn an_edited_child_is_reverted() {
    with_timeout(async {
        let running = start(json!({}));
        running.ready().await;
        let redis = format!("{APPS}/redis");
        let original =
            running.cluster.get(&redis).unwrap()["spec"]["template"]["spec"]["containers"][0]["args"].clone();
        running.cluster.edit(
            &redis,
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "redis", "image": "redis:7.4-alpine", "args": ["redis-server", "--maxmemory", "1gb"]}]}}}}),
        );
        eventually("args restored", || {
            let args = running.cluster.get(&redis)?["spec"]["template"]["spec"]["containers"][0]["args"].clone();
            (args == original).then_some(())
        })
        .await;
        let service = "/api/v1/namespaces/redis-demo/services/cache-demo-app";
        running.cluster.edit(service, json!({"spec": {"ports": [{"name": "http", "port": 8000, "nodePort": 31999}]}}));
        eventually("nodePort restored", || {
            (running.cluster.get(service)?["spec"]["ports"][0]["nodePort"] == 30080).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_spec_change_touches_only_what_it_affects() {
    with_timeout(async {
        let running = start(json!({}));
        running.ready().await;
        eventually("figures", || (running.demo()["status"]["cache"]["keys"] == "12").then_some(())).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = running.versions();
        let path = format!("{DEMOS}/demo");
        running.cluster.edit(&path, json!({"spec": {"redis": {"maxmemory": "32mb"}}}));
        let redis = format!("{APPS}/redis");
        eventually("Redis rolled with 32mb", || {
            let args = running.cluster.get(&redis)?["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
            args.contains("\"32mb\"").then_some(())
        })
        .await;
        let demo = eventually("generation 2 observed and ready", || {
            let demo = running.demo();
            (demo["status"]["observedGeneration"] == 2 && condition(&demo, "Ready")?.0 == "True").then_some(demo)
        })
        .await;
        assert_eq!(demo["metadata"]["generation"], 2);
        let after = running.versions();
        let changed: Vec<&String> = after.keys().filter(|p| before.get(*p) != after.get(*p)).collect();
        assert_eq!(changed, [&redis, &path], "only the CacheDemo (spec, status) and Redis may change");

        let before = running.versions();
        running.cluster.edit(&path, json!({"spec": {"cache": {"ttlSecs": 30}}}));
        let app = format!("{APPS}/cache-demo-app");
        eventually("the app rolled with CACHE_TTL_SECS=30", || {
            let env = running.cluster.get(&app)?["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
            env.contains("{\"name\":\"CACHE_TTL_SECS\",\"value\":\"30\"}").then_some(())
        })
        .await;
        eventually("generation 3 ready", || {
            let demo = running.demo();
            (demo["status"]["observedGeneration"] == 3 && condition(&demo, "Ready")?.0 == "True").then_some(())
        })
        .await;
        let after = running.versions();
        let changed: Vec<&String> = after.keys().filter(|p| before.get(*p) != after.get(*p)).collect();
        assert_eq!(changed, [&app, &path]);
    })
    .await;
}

#[tokio::test]
async fn a_stuck_pod_is_degraded_with_the_reason_and_a_warning() {
    with_timeout(async {
        let cluster_spec = json!({});
        let running = start(cluster_spec);
        running.cluster.set_rollout(
            "cache-demo-app",
            Rollout::Waiting { reason: "ErrImageNeverPull".into(), message: "image not present".into() },
        );
        let (_, reason, message) =
            eventually("Degraded=True", || condition(&running.demo(), "Degraded").filter(|c| c.0 == "True")).await;
        assert_eq!(reason, "ImageMissing");
        assert!(message.contains("cache-demo-app:latest") && message.contains("make image"), "{message}");
        let demo = running.demo();
        assert_eq!(condition(&demo, "Ready").unwrap().0, "False");
        assert_eq!(condition(&demo, "Progressing").unwrap().1, "Stuck");
        assert_eq!(demo["status"]["cache"]["hitRatio"], "unknown", "no figures from an app that is not ready");
        let warning = eventually("a Warning event", || {
            running
                .cluster
                .paths()
                .iter()
                .filter(|p| p.starts_with(EVENTS))
                .filter_map(|p| running.cluster.get(p))
                .find(|e| e["type"] == "Warning" && e["reason"] == "ImageMissing")
        })
        .await;
        assert!(warning["note"].as_str().unwrap().starts_with("Degraded is True"), "{warning}");
    })
    .await;
}

#[tokio::test]
async fn deleting_the_cache_demo_deletes_its_children() {
    with_timeout(async {
        let running = start(json!({}));
        running.ready().await;
        running.cluster.remove(&format!("{DEMOS}/demo"));
        for path in CHILDREN {
            assert!(running.cluster.get(path).is_none(), "{path} left behind");
        }
        assert!(!running.cluster.paths().iter().any(|p| p.contains("/pods/")), "pods left behind");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(running.cluster.get(CHILDREN[2]).is_none(), "recreated after its owner was deleted");
    })
    .await;
}

#[tokio::test]
async fn an_invalid_spec_applies_nothing_and_says_why() {
    with_timeout(async {
        let running = start(json!({"redis": {"maxmemory": "0mb"}}));
        let (_, reason, message) =
            eventually("Degraded", || condition(&running.demo(), "Degraded").filter(|c| c.0 == "True")).await;
        assert_eq!(reason, "InvalidSpec");
        assert!(message.contains("redis maxmemory"), "{message}");
        assert!(CHILDREN.iter().all(|p| running.cluster.get(p).is_none()), "applied an invalid spec");
        // Fixing the spec deploys it.
        running.cluster.edit(&format!("{DEMOS}/demo"), json!({"spec": {"redis": {"maxmemory": "64mb"}}}));
        running.ready().await;
    })
    .await;
}

#[tokio::test]
async fn a_second_cache_demo_in_the_namespace_is_refused_and_the_first_keeps_working() {
    with_timeout(async {
        let running = start(json!({}));
        running.ready().await;
        running
            .cluster
            .insert(&format!("{DEMOS}/other"), demo("other", json!({"replicas": 3}), "2026-01-02T00:00:00Z"));
        let (_, reason, message) = eventually("the second one Degraded", || {
            condition(&running.cluster.get(&format!("{DEMOS}/other"))?, "Degraded").filter(|c| c.0 == "True")
        })
        .await;
        assert_eq!(reason, "Conflict");
        assert!(message.contains("cachedemo/demo"), "{message}");
        let app = running.cluster.get(&format!("{APPS}/cache-demo-app")).unwrap();
        assert_eq!(app["spec"]["replicas"], 1, "the second CacheDemo took over the first one's children");
        assert_eq!(condition(&running.demo(), "Ready").unwrap().0, "True");
    })
    .await;
}

/// The group, resource and verbs RBAC checks for a request. A server-side apply that creates the object is
/// authorized as `patch` and, on the create path, as `create` too.
fn authorization(request: &support::Recorded) -> Vec<(String, String, String)> {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments[0] {
        "api" => (String::new(), &segments[2..]),
        _ => (segments[1].to_owned(), &segments[3..]),
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _name] => (plural.to_string(), true),
        [plural, _name, sub, ..] => (format!("{plural}/{sub}"), true),
        _ => panic!("unexpected path {}", request.path),
    };
    let verbs: &[&str] = match (request.method.as_str(), named) {
        ("GET", true) => &["get"],
        ("GET", false) if request.query.contains_key("watch") => &["watch"],
        ("GET", false) => &["list"],
        ("PATCH", _) if request.status == 201 => &["patch", "create"],
        ("PATCH", _) => &["patch"],
        ("POST", _) => &["create"],
        ("DELETE", _) => &["delete"],
        (method, _) => panic!("unexpected method {method}"),
    };
    verbs.iter().map(|verb| (group.clone(), resource.clone(), verb.to_string())).collect()
}

fn allowed(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> std::collections::BTreeSet<(String, String, String)> {
    let mut set = std::collections::BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    set.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    set
}

#[tokio::test]
async fn the_operators_rbac_allows_exactly_the_requests_it_makes() {
    with_timeout(async {
        // Everything the operator can do once: PVC storage, a stuck pod (events), figures (service proxy),
        // a repaired child twice (a repeated event is patched), a status change.
        let running = start(json!({"postgres": {"storage": "pvc"}}));
        running.cluster.set_rollout("cache-demo-app", Rollout::CrashLoop { restarts: 3 });
        eventually("Degraded", || condition(&running.demo(), "Degraded").filter(|c| c.0 == "True")).await;
        running.cluster.set_rollout("cache-demo-app", Rollout::ReadyAfterReads(1));
        running.cluster.edit(&format!("{DEMOS}/demo"), json!({"spec": {"replicas": 2}}));
        running.ready().await;
        eventually("figures", || (running.demo()["status"]["cache"]["keys"] == "12").then_some(())).await;
        for _ in 0..2 {
            running.cluster.remove("/api/v1/namespaces/redis-demo/services/redis");
            eventually("service/redis back", || running.cluster.get("/api/v1/namespaces/redis-demo/services/redis"))
                .await;
        }
        eventually("a repeated event patched", || {
            running.cluster.requests().iter().any(|r| r.method == "PATCH" && r.path.starts_with(EVENTS)).then_some(())
        })
        .await;

        let made: std::collections::BTreeSet<_> = running.cluster.requests().iter().flat_map(authorization).collect();
        let namespaced: std::collections::BTreeSet<_> =
            made.iter().filter(|(_, resource, _)| resource != "nodes").cloned().collect();
        let cluster_wide: std::collections::BTreeSet<_> =
            made.iter().filter(|(_, resource, _)| resource == "nodes").cloned().collect();
        assert_eq!(namespaced, allowed(&cache_demo_ctl::objects::role_rules()), "Role vs requests made");
        assert_eq!(cluster_wide, allowed(&cache_demo_ctl::objects::cluster_role_rules()), "ClusterRole vs requests");
    })
    .await;
}

#[tokio::test]
async fn up_in_operator_mode_deploys_the_operator_and_the_same_children_as_up() {
    use cache_demo_ctl::apply::{self, Applied, WaitOptions};
    use cache_demo_ctl::settings::Settings;
    with_timeout(async {
        let wait = WaitOptions { timeout: Duration::from_secs(10), poll: Duration::from_millis(5) };
        let settings = Settings::default();
        let spec = cache_demo_ctl::crd::CacheDemoSpec::default();

        // Operator mode, with the operator running as its Deployment would.
        let cluster = FakeCluster::new();
        cluster.set_app_stats(None);
        let operator = run_operator(&cluster);
        let report = apply::up_operator(&cluster.client(), &settings, &spec, &wait, &apply::Silent).await.unwrap();
        operator.abort();
        let labels: Vec<&str> = report.applied.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "namespace/redis-demo",
                "customresourcedefinition/cachedemos.cache-demo.dev",
                "serviceaccount/cache-demo-operator",
                "role/cache-demo-operator",
                "rolebinding/cache-demo-operator",
                "clusterrole/cache-demo-operator-redis-demo",
                "clusterrolebinding/cache-demo-operator-redis-demo",
                "deployment/cache-demo-operator",
                "cachedemo/demo",
            ]
        );
        assert!(report.applied.iter().all(|(_, o)| *o == Applied::Created));
        assert_eq!(report.node_address.as_deref(), Some(NODE_IP));

        // The classic path.
        let classic = FakeCluster::new();
        apply::up(&classic.client(), &settings, &wait, &apply::Silent).await.unwrap();

        for path in CHILDREN {
            let mut by_operator = cluster.get(path).unwrap_or_else(|| panic!("{path} not deployed by the operator"));
            let mut by_up = classic.get(path).unwrap();
            assert_eq!(by_operator["metadata"]["ownerReferences"][0]["kind"], "CacheDemo");
            for object in [&mut by_operator, &mut by_up] {
                let meta = object["metadata"].as_object_mut().unwrap();
                for server_field in ["ownerReferences", "resourceVersion", "uid", "creationTimestamp", "generation"] {
                    meta.remove(server_field);
                }
                object.as_object_mut().unwrap().remove("status");
                if path.ends_with("secrets/cache-demo-credentials") {
                    object.as_object_mut().unwrap().remove("data");
                }
                if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("clusterIP");
                }
            }
            assert_eq!(by_operator, by_up, "{path} differs between the two paths");
        }

        // make undeploy removes everything, the cluster-wide objects too.
        let cluster_role = "/apis/rbac.authorization.k8s.io/v1/clusterroles/cache-demo-operator-redis-demo";
        let crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/cachedemos.cache-demo.dev";
        assert!(cluster.get(cluster_role).is_some() && cluster.get(crd).is_some());
        assert!(apply::down(&cluster.client(), "redis-demo", &wait, &apply::Silent).await.unwrap());
        assert!(cluster.get(cluster_role).is_none(), "ClusterRole left behind");
        assert!(cluster.get(crd).is_none(), "CRD left behind with no CacheDemo anywhere");
        assert!(cluster.paths().iter().all(|p| !p.contains("cache-demo-operator")), "{:?}", cluster.paths());
    })
    .await;
}

#[tokio::test]
async fn traffic_does_not_make_the_operator_write_its_status_in_a_loop() {
    with_timeout(async {
        let running = start_with(json!({}), Duration::from_secs(2));
        running.ready().await;
        eventually("figures", || (running.demo()["status"]["cache"]["keys"] == "12").then_some(())).await;
        running.cluster.clear_requests();
        // The app serves requests all the time: its figures differ on every read.
        for hits in 0..60u64 {
            running.cluster.set_app_stats(Some(json!({
                "hits": 100 + hits, "misses": 10, "hit_rate": (100 + hits) as f64 / (110 + hits) as f64, "keys": 12,
                "redis": {"available": true, "used_memory": 1_258_291, "maxmemory": 67_108_864, "evicted_keys": 0},
            })));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let writes = running.cluster.requests().iter().filter(|r| r.path.ends_with("/status")).count();
        // Figures are read at most once per refresh interval (2 s here), so at most one write in these 600 ms;
        // a write that triggers a reconcile that reads the figures again would write over and over.
        assert!(writes <= 1, "{writes} status writes in 600 ms");
    })
    .await;
}
