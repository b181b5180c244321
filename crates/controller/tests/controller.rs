//! `up`, `down` and `status` against the in-memory API server in `support/`: what reaches the cluster, in what
//! order, what a second run changes (nothing), and what a user reads when something never becomes ready.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_demo_ctl::apply::{self, Applied, Error, Progress, Step, WaitOptions};
use cache_demo_ctl::objects::{Credentials, Objects};
use cache_demo_ctl::render;
use cache_demo_ctl::settings::Settings;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use support::{FakeCluster, NODE_IP, Rollout};

const NS: &str = "/api/v1/namespaces/redis-demo";
const APPS: &str = "/apis/apps/v1/namespaces/redis-demo/deployments";
const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/redis-demo/networkpolicies";

fn fast(timeout_ms: u64) -> WaitOptions {
    WaitOptions { timeout: Duration::from_millis(timeout_ms), poll: Duration::from_millis(5) }
}

/// A progress event: (label, "start" | "update" | "finish" | "fail", message).
type Event = (String, &'static str, String);

/// Records every progress event.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

struct RecordedStep(String, Recorder);

impl Progress for Recorder {
    fn start(&self, label: &str) -> Box<dyn Step> {
        self.push(label, "start", "");
        Box::new(RecordedStep(label.into(), self.clone()))
    }
}

impl Recorder {
    fn push(&self, label: &str, event: &'static str, message: &str) {
        self.0.lock().unwrap().push((label.into(), event, message.into()));
    }
    fn finished(&self) -> Vec<(String, String)> {
        let events = self.0.lock().unwrap();
        events.iter().filter(|e| e.1 == "finish").map(|e| (e.0.clone(), e.2.clone())).collect()
    }
}

impl Step for RecordedStep {
    fn update(&self, message: &str) {
        self.1.push(&self.0, "update", message);
    }
    fn finish(&self, message: &str) {
        self.1.push(&self.0, "finish", message);
    }
    fn fail(&self, message: &str) {
        self.1.push(&self.0, "fail", message);
    }
}

async fn up(cluster: &FakeCluster) -> Result<apply::UpReport, Error> {
    apply::up(&cluster.client(), &Settings::default(), &fast(2_000), &apply::Silent).await
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn up_applies_every_object_in_order_with_one_field_manager() {
    let cluster = FakeCluster::new();
    let report = up(&cluster).await.unwrap();

    let applies = cluster.applies();
    let order: Vec<&str> = applies.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        order,
        [
            NS.to_string(),
            format!("{NS}/secrets/cache-demo-credentials"),
            format!("{NS}/configmaps/postgres-init-sql"),
            format!("{APPS}/postgres"),
            format!("{NS}/services/postgres"),
            format!("{POLICIES}/postgres-allow-app"),
            format!("{APPS}/redis"),
            format!("{NS}/services/redis"),
            format!("{POLICIES}/redis-allow-app"),
            format!("{APPS}/cache-demo-app"),
            format!("{NS}/services/cache-demo-app"),
        ]
    );
    for request in &applies {
        assert_eq!(request.content_type.as_deref(), Some("application/apply-patch+yaml"), "{}", request.path);
        assert_eq!(request.query.get("fieldManager").map(String::as_str), Some("cache-demo-ctl"));
        assert_eq!(request.query.get("force").map(String::as_str), Some("true"), "{}", request.path);
    }
    assert!(report.applied.iter().all(|(_, outcome)| *outcome == Applied::Created), "{:?}", report.applied);
    assert_eq!(report.applied.len(), 11);
    assert_eq!(
        report.generated,
        ["postgres-password", "redis-password", "admin-token", "app-db-password", "app-redis-password"]
    );
    assert_eq!(report.node_address.as_deref(), Some(NODE_IP));
}

#[tokio::test]
async fn applied_objects_carry_the_documented_fields() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();

    let redis = cluster.get(&format!("{APPS}/redis")).unwrap();
    let c = container(&redis);
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no"]);
    assert_eq!(c["command"][0], "sh");
    assert!(c["command"][2].as_str().unwrap().contains("exec redis-server /data/auth.conf"), "{}", c["command"]);
    let app_ref = json!({"name": "cache-demo-credentials", "key": "app-redis-password"});
    assert_eq!(env(c, "APP_REDIS_PASSWORD")["valueFrom"]["secretKeyRef"], app_ref);
    let redis_ref = json!({"name": "cache-demo-credentials", "key": "redis-password"});
    assert_eq!(env(c, "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"], redis_ref);
    assert_eq!(env(c, "REDISCLI_AUTH")["valueFrom"]["secretKeyRef"], redis_ref);
    assert_eq!(c["readinessProbe"]["exec"]["command"], json!(["sh", "-c", "redis-cli ping | grep -q PONG"]));

    let service = cluster.get(&format!("{NS}/services/cache-demo-app")).unwrap();
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["ports"][0]["port"], 8000);
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);

    let app = cluster.get(&format!("{APPS}/cache-demo-app")).unwrap();
    let c = container(&app);
    assert_eq!(c["image"], "cache-demo-app:latest");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(env(c, "APP_DB_PASSWORD")["valueFrom"]["secretKeyRef"]["key"], "app-db-password");
    assert_eq!(env(c, "POSTGRES_PASSWORD"), &Value::Null, "the app never gets the superuser's password");
    assert_eq!(env(c, "ADMIN_TOKEN")["valueFrom"]["secretKeyRef"]["key"], "admin-token");
    assert_eq!(
        env(c, "DATABASE_URL")["value"],
        "postgres://cache_demo_app:$(APP_DB_PASSWORD)@postgres:5432/cache_demo"
    );
    assert_eq!(env(c, "REDIS_URL")["value"], "redis://cache-demo@redis:6379/");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
               "capabilities": {"drop": ["ALL"]}})
    );
    let pod = &app["spec"]["template"];
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 10001);
    assert_eq!(pod["spec"]["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true");

    // No password appears in any object other than the Secret.
    let secret: Secret =
        serde_json::from_value(cluster.get(&format!("{NS}/secrets/cache-demo-credentials")).unwrap()).unwrap();
    let mut passwords = Vec::new();
    for value in secret.data.unwrap().into_values() {
        let text = String::from_utf8(value.0).unwrap();
        assert!(text.len() >= 24 && text.chars().all(|c| c.is_ascii_alphanumeric()), "{text}");
        passwords.push(text);
    }
    for path in cluster.paths().iter().filter(|p| !p.contains("/secrets/")) {
        let text = cluster.get(path).unwrap().to_string();
        for password in &passwords {
            assert!(!text.contains(password.as_str()), "password leaked into {path}");
        }
    }

    let policy = cluster.get(&format!("{POLICIES}/postgres-allow-app")).unwrap();
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "postgres");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "cache-demo-app"
    );
}

#[tokio::test]
async fn a_second_up_changes_nothing() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();
    let versions = cluster.resource_versions();
    let first_bodies: Vec<_> = cluster.applies().into_iter().map(|r| (r.path, r.body)).collect();
    cluster.clear_requests();

    let progress = Recorder::default();
    let report = apply::up(&cluster.client(), &Settings::default(), &fast(2_000), &progress).await.unwrap();

    assert_eq!(cluster.resource_versions(), versions, "a resourceVersion changed");
    let second_bodies: Vec<_> = cluster.applies().into_iter().map(|r| (r.path, r.body)).collect();
    assert_eq!(second_bodies, first_bodies, "the second run sent different objects");
    assert!(report.applied.iter().all(|(_, outcome)| *outcome == Applied::Unchanged), "{:?}", report.applied);
    assert!(report.generated.is_empty());
    let finished = progress.finished();
    assert_eq!(finished.len(), 11, "{finished:?}");
    assert!(finished.iter().all(|(_, m)| m.starts_with("unchanged")), "{finished:?}");
}

#[tokio::test]
async fn the_secret_is_never_rotated() {
    let cluster = FakeCluster::new();
    let path = format!("{NS}/secrets/cache-demo-credentials");
    up(&cluster).await.unwrap();
    let first = cluster.get(&path).unwrap()["data"].clone();
    up(&cluster).await.unwrap();
    up(&cluster).await.unwrap();
    assert_eq!(cluster.get(&path).unwrap()["data"], first);
}

#[tokio::test]
async fn an_existing_secret_keeps_its_values_and_gains_missing_keys() {
    let cluster = FakeCluster::new();
    cluster.insert(NS, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "redis-demo"}}));
    let path = format!("{NS}/secrets/cache-demo-credentials");
    // An older deployment: no admin token yet.
    cluster.insert(
        &path,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "cache-demo-credentials", "namespace": "redis-demo"},
               "data": {"postgres-password": "b2xkcGc=", "redis-password": "b2xkcmVkaXM="}}),
    );
    let report = up(&cluster).await.unwrap();
    assert_eq!(report.generated, ["admin-token", "app-db-password", "app-redis-password"]);
    let data = cluster.get(&path).unwrap()["data"].clone();
    assert_eq!(data["postgres-password"], "b2xkcGc=");
    assert_eq!(data["redis-password"], "b2xkcmVkaXM=");
    assert!(data["admin-token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(report.applied.contains(&("secret/cache-demo-credentials".into(), Applied::Configured)));
}

#[tokio::test]
async fn up_waits_for_the_backends_before_applying_the_app() {
    let cluster = FakeCluster::new();
    cluster.set_rollout("postgres", Rollout::ReadyAfterReads(4));
    cluster.set_rollout("redis", Rollout::ReadyAfterReads(2));
    let progress = Recorder::default();
    apply::up(&cluster.client(), &Settings::default(), &fast(2_000), &progress).await.unwrap();

    let requests = cluster.requests();
    let app_apply = requests.iter().position(|r| r.method == "PATCH" && r.path.ends_with("/cache-demo-app")).unwrap();
    let postgres_reads = requests.iter().filter(|r| r.method == "GET" && r.path == format!("{APPS}/postgres"));
    assert!(postgres_reads.count() >= 5, "postgres was not polled until ready");
    let last_postgres_read =
        requests.iter().rposition(|r| r.method == "GET" && r.path == format!("{APPS}/postgres")).unwrap();
    assert!(last_postgres_read < app_apply, "the app was applied before PostgreSQL was ready");
    let postgres = cluster.get(&format!("{APPS}/postgres")).unwrap();
    assert_eq!(postgres["status"]["readyReplicas"], 1);

    let events = progress.0.lock().unwrap().clone();
    assert!(
        events.iter().any(|(l, e, m)| l == "deployment/postgres" && *e == "update" && m.contains("0/1 ready")),
        "{events:?}"
    );
    let finished = progress.finished();
    let postgres_done = finished.iter().find(|(l, _)| l == "deployment/postgres").unwrap();
    assert!(postgres_done.1.starts_with("created, ready in"), "{postgres_done:?}");
}

#[tokio::test]
async fn a_missing_app_image_times_out_naming_the_pod_and_the_fix() {
    let cluster = FakeCluster::new();
    cluster.set_rollout(
        "cache-demo-app",
        Rollout::Waiting {
            reason: "ErrImageNeverPull".into(),
            message: "Container image \"cache-demo-app:latest\" is not present with pull policy of Never".into(),
        },
    );
    let progress = Recorder::default();
    let err = apply::up(&cluster.client(), &Settings::default(), &fast(300), &progress).await.unwrap_err();

    assert_eq!(err.kind(), "not_ready");
    let message = err.to_string();
    assert!(message.starts_with("deployment/cache-demo-app in namespace redis-demo is not ready after"), "{message}");
    assert!(message.contains("(0/1 ready)"), "{message}");
    assert!(message.contains("pod cache-demo-app-1-00000"), "{message}");
    assert!(message.contains("image cache-demo-app:latest is not in the cluster (ErrImageNeverPull)"), "{message}");
    assert!(message.contains("run `make deploy`") && message.contains("`make image`"), "{message}");
    let events = progress.0.lock().unwrap().clone();
    assert!(events.iter().any(|(l, e, _)| l == "deployment/cache-demo-app" && *e == "fail"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|(l, e, m)| l == "deployment/cache-demo-app" && *e == "update" && m.contains("ErrImageNeverPull")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_crash_loop_times_out_pointing_at_the_logs() {
    let cluster = FakeCluster::new();
    cluster.set_rollout("cache-demo-app", Rollout::CrashLoop { restarts: 5 });
    let err = up_with_timeout(&cluster, 200).await;
    assert!(err.contains("keeps crashing (CrashLoopBackOff, 5 restarts"), "{err}");
    assert!(err.contains("kubectl logs cache-demo-app-1-00000 -c app -n redis-demo --previous"), "{err}");
}

#[tokio::test]
async fn a_failing_readiness_probe_is_quoted() {
    let cluster = FakeCluster::new();
    cluster.set_rollout("cache-demo-app", Rollout::ProbeFailing);
    let err = up_with_timeout(&cluster, 200).await;
    assert!(err.contains("readiness probe is failing (Unhealthy: Readiness probe failed"), "{err}");
}

#[tokio::test]
async fn a_backend_that_never_schedules_stops_before_the_app() {
    let cluster = FakeCluster::new();
    cluster.set_rollout("postgres", Rollout::Unschedulable);
    let err = up_with_timeout(&cluster, 200).await;
    assert!(err.starts_with("deployment/postgres in namespace redis-demo is not ready"), "{err}");
    assert!(err.contains("cannot be scheduled (Unschedulable): 0/1 nodes are available"), "{err}");
    assert!(cluster.get(&format!("{APPS}/cache-demo-app")).is_none(), "the app was applied anyway");
}

async fn up_with_timeout(cluster: &FakeCluster, timeout_ms: u64) -> String {
    let result = apply::up(&cluster.client(), &Settings::default(), &fast(timeout_ms), &apply::Silent).await;
    result.unwrap_err().to_string()
}

#[tokio::test]
async fn options_reach_the_cluster() {
    let cluster = FakeCluster::new();
    let settings = Settings {
        namespace: "demo".into(),
        image: "registry.example/cache-demo:v2".into(),
        replicas: 2,
        redis_maxmemory: "128mb".into(),
        redis_policy: "allkeys-lfu".into(),
        cache_ttl_secs: 15,
        db_delay_ms: 300,
        node_port: 30100,
        ..Settings::default()
    };
    apply::up(&cluster.client(), &settings, &fast(2_000), &apply::Silent).await.unwrap();
    let app = cluster.get("/apis/apps/v1/namespaces/demo/deployments/cache-demo-app").unwrap();
    assert_eq!(app["spec"]["replicas"], 2);
    assert_eq!(container(&app)["image"], "registry.example/cache-demo:v2");
    assert_eq!(env(container(&app), "CACHE_TTL_SECS")["value"], "15");
    assert_eq!(env(container(&app), "DB_DELAY_MS")["value"], "300");
    let redis = cluster.get("/apis/apps/v1/namespaces/demo/deployments/redis").unwrap();
    let args = container(&redis)["args"].to_string();
    assert!(args.contains("\"--maxmemory\",\"128mb\"") && args.contains("\"allkeys-lfu\""), "{args}");
    let service = cluster.get("/api/v1/namespaces/demo/services/cache-demo-app").unwrap();
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30100);
    assert!(cluster.get(NS).is_none());
}

#[tokio::test]
async fn rendered_objects_are_the_applied_objects() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();
    let rendered = render::stream(&Objects::build(&Settings::default(), &Credentials::Placeholders)).unwrap();
    let documents: Vec<Value> =
        rendered.split("\n---\n").skip(1).map(|doc| serde_saphyr::from_str(doc).unwrap()).collect();
    let applied: Vec<Value> = cluster.applies().into_iter().filter_map(|r| r.body).collect();
    assert_eq!(documents.len(), applied.len());
    for (doc, body) in documents.iter().zip(&applied) {
        if doc["kind"] == "Secret" {
            assert_eq!(doc["metadata"]["name"], body["metadata"]["name"]);
            continue;
        }
        assert_eq!(doc, body, "render and up differ for {}", doc["metadata"]["name"]);
    }
}

#[tokio::test]
async fn an_api_error_names_the_object() {
    let cluster = FakeCluster::new();
    cluster.reject_apply(&format!("{NS}/services/redis"), 422, "spec.ports[0].nodePort: Invalid value");
    let progress = Recorder::default();
    let err = apply::up(&cluster.client(), &Settings::default(), &fast(2_000), &progress).await.unwrap_err();
    assert_eq!(err.kind(), "api");
    assert!(err.to_string().starts_with("applying service/redis: "), "{err}");
    assert!(err.to_string().contains("nodePort: Invalid value"), "{err}");
    let events = progress.0.lock().unwrap().clone();
    assert!(events.iter().any(|(l, e, _)| l == "service/redis" && *e == "fail"), "{events:?}");
}

#[tokio::test]
async fn down_deletes_the_namespace_and_waits_until_it_is_gone() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();
    cluster.set_namespace_linger(3);
    cluster.clear_requests();
    let progress = Recorder::default();
    assert!(apply::down(&cluster.client(), "redis-demo", &fast(2_000), &progress).await.unwrap());

    let requests = cluster.requests();
    assert_eq!(requests.iter().filter(|r| r.method == "DELETE").count(), 1);
    assert!(requests.iter().filter(|r| r.method == "GET" && r.path == NS).count() >= 5, "did not wait");
    assert!(cluster.paths().iter().all(|p| !p.contains("redis-demo")), "{:?}", cluster.paths());
    let finished = progress.finished();
    assert!(finished[0].1.starts_with("deleted in"), "{finished:?}");

    // Nothing left: a second down says so and succeeds.
    assert!(!apply::down(&cluster.client(), "redis-demo", &fast(2_000), &apply::Silent).await.unwrap());
}

#[tokio::test]
async fn down_times_out_when_the_namespace_stays() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();
    cluster.set_namespace_linger(u32::MAX);
    let err = apply::down(&cluster.client(), "redis-demo", &fast(100), &apply::Silent).await.unwrap_err();
    assert_eq!(err.kind(), "namespace_not_deleted");
    assert!(err.to_string().contains("namespace redis-demo still exists"), "{err}");
}

#[tokio::test]
async fn status_lists_every_object_and_its_readiness() {
    let cluster = FakeCluster::new();
    let rows = apply::status(&cluster.client(), &Settings::default()).await.unwrap();
    assert_eq!(rows.len(), 11);
    assert!(rows.iter().all(|r| !r.ready && r.state == "missing"), "{rows:?}");

    cluster
        .set_rollout("cache-demo-app", Rollout::Waiting { reason: "ImagePullBackOff".into(), message: String::new() });
    let _ = up_with_timeout(&cluster, 100).await;
    let rows = apply::status(&cluster.client(), &Settings::default()).await.unwrap();
    let row = |name: &str, kind: &str| rows.iter().find(|r| r.name == name && r.kind == kind).unwrap().clone();
    assert!(row("redis-demo", "Namespace").ready);
    assert_eq!(row("cache-demo-credentials", "Secret").state, "5 keys");
    assert_eq!(row("postgres", "Deployment").state, "1/1 ready");
    let app = row("cache-demo-app", "Deployment");
    assert!(!app.ready);
    assert_eq!(app.state, "0/1 ready (ImagePullBackOff)");
    assert_eq!(row("cache-demo-app", "Service").state, "NodePort 8000:30080/TCP");
    assert!(row("redis", "Service").state.starts_with("ClusterIP 10.96.0."), "{rows:?}");
}

#[tokio::test]
async fn a_new_image_id_rolls_the_app_and_the_same_one_changes_nothing() {
    let cluster = FakeCluster::new();
    let app = format!("{APPS}/cache-demo-app");
    let built = |id: &str| Settings { image_id: Some(format!("sha256:{}", id.repeat(32))), ..Settings::default() };
    let deploy = |s: Settings| {
        let client = cluster.client();
        async move { apply::up(&client, &s, &fast(2_000), &apply::Silent).await.unwrap() }
    };
    deploy(built("aa")).await;
    let first = cluster.get(&app).unwrap();
    assert_eq!(
        first["spec"]["template"]["metadata"]["annotations"]["cache-demo/image-id"],
        format!("sha256:{}", "aa".repeat(32))
    );

    // The same build again: nothing changes, no pod is replaced.
    let versions = cluster.resource_versions();
    let report = deploy(built("aa")).await;
    assert!(report.applied.iter().all(|(_, outcome)| *outcome == Applied::Unchanged), "{:?}", report.applied);
    assert_eq!(cluster.resource_versions(), versions);

    // A rebuilt image under the same tag: only the app's Deployment changes, and it rolls out new pods.
    let report = deploy(built("bb")).await;
    let changed: Vec<_> = report.applied.iter().filter(|(_, o)| *o != Applied::Unchanged).collect();
    assert_eq!(changed, [&("deployment/cache-demo-app".to_string(), Applied::Configured)]);
    let second = cluster.get(&app).unwrap();
    assert_eq!(container(&second)["image"], "cache-demo-app:latest");
    assert_eq!(second["metadata"]["generation"].as_i64(), first["metadata"]["generation"].as_i64().map(|g| g + 1));
    let pods: Vec<String> = cluster.paths().into_iter().filter(|p| p.contains("/pods/cache-demo-app-")).collect();
    assert!(!pods.is_empty() && pods.iter().all(|p| p.contains("cache-demo-app-2-")), "old pods kept: {pods:?}");
}

#[tokio::test]
async fn up_waits_for_a_namespace_that_is_still_being_deleted() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();
    apply::down(&cluster.client(), "redis-demo", &fast(0), &apply::Silent).await.unwrap_err();
    assert!(cluster.get(NS).unwrap()["metadata"]["deletionTimestamp"].is_string(), "not left terminating");
    cluster.set_namespace_linger(3);
    cluster.clear_requests();

    let progress = Recorder::default();
    let report = apply::up(&cluster.client(), &Settings::default(), &fast(2_000), &progress).await.unwrap();

    assert!(report.applied.iter().all(|(_, outcome)| *outcome == Applied::Created), "{:?}", report.applied);
    let requests = cluster.requests();
    let first_patch = requests.iter().position(|r| r.method == "PATCH").unwrap();
    let reads_before = requests[..first_patch].iter().filter(|r| r.method == "GET" && r.path == NS).count();
    assert!(reads_before >= 4, "applied before the old namespace was gone ({reads_before} reads)");
    let events = progress.0.lock().unwrap().clone();
    assert!(
        events.iter().any(|(l, e, m)| l == "namespace/redis-demo" && *e == "update" && m.contains("being deleted"))
    );
    assert!(events.iter().any(|(_, e, m)| *e == "finish" && m.starts_with("old namespace gone")), "{events:?}");
}

#[tokio::test]
async fn up_says_in_one_line_when_the_namespace_stays_terminating() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();
    cluster.set_namespace_linger(u32::MAX);
    apply::down(&cluster.client(), "redis-demo", &fast(0), &apply::Silent).await.unwrap_err();
    cluster.clear_requests();

    let err = up_with_timeout(&cluster, 50).await;
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("namespace redis-demo still exists"), "{err}");
    assert!(!err.contains("403") && !err.contains("Forbidden"), "{err}");
    assert!(cluster.applies().is_empty(), "applied into a terminating namespace");
}

#[tokio::test]
async fn a_namespace_deleted_during_up_is_named_not_a_raw_403() {
    let cluster = FakeCluster::new();
    up(&cluster).await.unwrap();
    // The namespace turns terminating after up has looked at it (another terminal ran `down`).
    cluster.insert(
        NS,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "redis-demo", "deletionTimestamp": "2026-01-01T00:00:01Z"},
               "status": {"phase": "Terminating"}}),
    );
    cluster.set_namespace_linger(u32::MAX);
    let object =
        cache_demo_ctl::objects::Object::ConfigMap(cache_demo_ctl::objects::init_sql_config_map(&Settings::default()));
    let err = apply::apply_object(&cluster.client(), &object).await.unwrap_err();
    assert_eq!(err.kind(), "namespace_terminating");
    assert!(err.to_string().starts_with("applying configmap/postgres-init-sql: namespace redis-demo is being deleted"));
}
