//! A small in-memory Kubernetes API server behind `kube::Client`, for testing cache-demo-ctl without a cluster.
//!
//! It is kube's documented mock (`tower_test::mock::pair` + `kube::Client::new`) with a store behind it:
//! objects are kept as JSON by path; GET, LIST (with `labelSelector`), WATCH (a stream of changes after the
//! resourceVersion asked for, so kube-runtime's Controller runs against it), server-side apply PATCH (also of
//! the status subresource), JSON merge PATCH, POST and DELETE are answered like the API server does for the
//! parts cache-demo-ctl uses. An apply that changes nothing keeps the object and its resourceVersion; one that
//! changes it bumps the resourceVersion (and the generation, for a new spec). A tiny stand-in for the
//! Deployment controller and kubelet creates pods and makes them ready, or keeps them stuck in a chosen way;
//! one for the garbage collector deletes what a deleted object owned; the app's `/api/stats` answers through
//! the service proxy with figures a test sets. Every request is recorded.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use std::convert::Infallible;

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

type ResponseBody = BoxBody<Bytes, Infallible>;
type WatchSender = mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>;

pub const NODE_IP: &str = "192.168.49.2";
pub const FIELD_MANAGER: &str = "cache-demo-ctl";

/// What the simulated cluster does with a Deployment's pods.
#[derive(Debug, Clone)]
pub enum Rollout {
    /// The pods become ready once the Deployment has been read this many times after it was applied.
    ReadyAfterReads(u32),
    /// The container never starts: waiting with this reason (`ErrImageNeverPull`, ...).
    Waiting { reason: String, message: String },
    /// The container starts and exits, again and again.
    CrashLoop { restarts: i32 },
    /// The container runs but its readiness probe fails (with the Warning event the kubelet records).
    ProbeFailing,
    /// No node has room for the pod.
    Unschedulable,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    /// The answer's status code (201: a server-side apply or POST created the object).
    pub status: u16,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    resource_version: u64,
    requests: Vec<Recorded>,
    rollouts: HashMap<String, Rollout>,
    /// Deployment name → reads left before its pods turn ready.
    reads_until_ready: HashMap<String, u32>,
    /// Reads of a deleted namespace that still see it terminating.
    namespace_linger: u32,
    /// Path → (status, message): answer the next PATCH there with an error.
    reject: HashMap<String, (u16, String)>,
    next_cluster_ip: u8,
    /// Every change, in order: (resourceVersion, path, watch event type, the object then).
    history: Vec<(u64, String, &'static str, Value)>,
    watchers: Vec<Watcher>,
    /// What the app's `/api/stats` answers through the service proxy; None: the app cannot be reached.
    app_stats: Option<Value>,
}

/// An open WATCH: which objects it wants, and where their changes go.
struct Watcher {
    /// `/apis/apps/v1/namespaces/ns/deployments`
    collection: String,
    selector: String,
    tx: WatchSender,
}

pub struct FakeCluster {
    state: Arc<Mutex<State>>,
    client: kube::Client,
    server: JoinHandle<()>,
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCluster {
    /// A cluster with one node (`minikube`, InternalIP [`NODE_IP`]) and nothing else.
    pub fn new() -> FakeCluster {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
        let state = Arc::new(Mutex::new(State { namespace_linger: 1, next_cluster_ip: 10, ..State::default() }));
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let reply = {
                    let mut state = lock(&server_state);
                    let reply = state.handle(&parts, &bytes);
                    let code = match &reply {
                        Reply::Json(status, _) => status.as_u16(),
                        Reply::Watch(_) => 200,
                    };
                    if let Some(last) = state.requests.last_mut() {
                        last.status = code;
                    }
                    reply
                };
                let (status, body) = match reply {
                    Reply::Json(status, value) => {
                        (status, Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default())).boxed())
                    }
                    Reply::Watch(rx) => (StatusCode::OK, StreamBody::new(rx).boxed()),
                };
                let response =
                    Response::builder().status(status).header("content-type", "application/json").body(body).unwrap();
                send.send_response(response);
            }
        });
        let cluster = FakeCluster { state, client: kube::Client::new(service, "default"), server };
        cluster.insert(
            "/api/v1/nodes/minikube",
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "minikube"},
                "status": {"addresses": [
                    {"type": "InternalIP", "address": NODE_IP},
                    {"type": "Hostname", "address": "minikube"},
                ]},
            }),
        );
        cluster
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn set_rollout(&self, deployment: &str, rollout: Rollout) {
        lock(&self.state).rollouts.insert(deployment.into(), rollout);
    }

    /// How many reads of a deleted namespace still find it (terminating) before it is gone.
    pub fn set_namespace_linger(&self, reads: u32) {
        lock(&self.state).namespace_linger = reads;
    }

    /// The next server-side apply of `path` fails with this status.
    pub fn reject_apply(&self, path: &str, code: u16, message: &str) {
        lock(&self.state).reject.insert(path.into(), (code, message.into()));
    }

    /// Stores an object as if someone had created it (resourceVersion assigned, uid kept or given).
    pub fn insert(&self, path: &str, mut object: Value) {
        let mut state = lock(&self.state);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{}", state.resource_version + 1));
        }
        if object["metadata"]["generation"].is_null() {
            object["metadata"]["generation"] = json!(1);
        }
        state.put(path, object);
    }

    /// Deletes an object as `kubectl delete` would (the garbage collector follows).
    pub fn remove(&self, path: &str) {
        let mut state = lock(&self.state);
        if let Some(route) = route(path) {
            state.delete(&route, path);
        }
    }

    /// Changes a stored object with a JSON merge patch, as `kubectl edit` would (spec changes bump the
    /// generation).
    pub fn edit(&self, path: &str, patch: Value) {
        let mut state = lock(&self.state);
        let Some(mut object) = state.objects.get(path).cloned() else { panic!("no object at {path}") };
        let spec_before = object["spec"].clone();
        merge(&mut object, &patch);
        if object["spec"] != spec_before {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object["metadata"]["generation"] = json!(generation);
        }
        state.put(path, object.clone());
        if object["kind"] == "Deployment" && object["spec"] != spec_before {
            let ns = object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
            state.roll_out(path, &ns);
        }
    }

    /// What the app's `/api/stats` answers through the service proxy (None: unreachable).
    pub fn set_app_stats(&self, stats: Option<Value>) {
        lock(&self.state).app_stats = stats;
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        lock(&self.state).objects.get(path).cloned()
    }

    pub fn paths(&self) -> Vec<String> {
        lock(&self.state).objects.keys().cloned().collect()
    }

    /// resourceVersion of every stored object, by path.
    pub fn resource_versions(&self) -> BTreeMap<String, String> {
        lock(&self.state)
            .objects
            .iter()
            .map(|(path, o)| (path.clone(), o["metadata"]["resourceVersion"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The server-side apply requests, in order.
    pub fn applies(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == "PATCH").collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

impl Default for FakeCluster {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a request points.
struct Route {
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    /// The path without the name: the collection.
    collection: String,
    /// What follows the name (`status`, `proxy/api/stats`).
    subresource: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let prefix = match *segments.first()? {
        "api" => 2,
        "apis" => 3,
        _ => return None,
    };
    let rest = segments.get(prefix..)?;
    let base = segments[..prefix].join("/");
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural, name, sub @ ..] if !sub.is_empty() => (Some(*ns), *plural, Some(*name), sub),
        [plural] => (None, *plural, None, &[][..]),
        [plural, name] => (None, *plural, Some(*name), &[][..]),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, &[][..]),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), &[][..]),
        _ => return None,
    };
    let collection = match namespace {
        Some(ns) => format!("/{base}/namespaces/{ns}/{plural}"),
        None => format!("/{base}/{plural}"),
    };
    Some(Route {
        namespace: namespace.map(String::from),
        plural: plural.into(),
        name: name.map(String::from),
        collection,
        subresource: (!sub.is_empty()).then(|| sub.join("/")),
    })
}

fn kind_of(plural: &str) -> Option<&'static str> {
    Some(match plural {
        "namespaces" => "Namespace",
        "secrets" => "Secret",
        "configmaps" => "ConfigMap",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "deployments" => "Deployment",
        "services" => "Service",
        "networkpolicies" => "NetworkPolicy",
        "pods" => "Pod",
        "events" => "Event",
        "nodes" => "Node",
        "cachedemos" => "CacheDemo",
        "customresourcedefinitions" => "CustomResourceDefinition",
        "serviceaccounts" => "ServiceAccount",
        "roles" => "Role",
        "rolebindings" => "RoleBinding",
        "clusterroles" => "ClusterRole",
        "clusterrolebindings" => "ClusterRoleBinding",
        _ => return None,
    })
}

/// An answer: JSON, or the stream of a WATCH.
enum Reply {
    Json(StatusCode, Value),
    Watch(mpsc::UnboundedReceiver<Result<Frame<Bytes>, Infallible>>),
}

fn ok(value: Value) -> Reply {
    Reply::Json(StatusCode::OK, value)
}

fn status(code: u16, reason: &str, message: &str) -> Reply {
    let value = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "message": message, "reason": reason, "code": code,
    });
    Reply::Json(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), value)
}

fn not_found(route: &Route) -> Reply {
    let name = route.name.as_deref().unwrap_or_default();
    status(404, "NotFound", &format!("{} \"{name}\" not found", route.plural))
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c=d` against an object's labels.
fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

/// The object without what the server adds: what an apply is compared on.
fn applied_part(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["resourceVersion", "uid", "generation", "creationTimestamp", "managedFields"] {
            meta.remove(field);
        }
    }
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
    }
    if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    o
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

impl State {
    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Stores an object under a new resourceVersion and tells the watchers.
    fn put(&mut self, path: &str, mut object: Value) {
        let rv = self.bump();
        object["metadata"]["resourceVersion"] = json!(rv);
        let kind = if self.objects.contains_key(path) { "MODIFIED" } else { "ADDED" };
        self.objects.insert(path.into(), object.clone());
        self.notify(path, kind, object);
    }

    /// Removes an object and tells the watchers.
    fn take(&mut self, path: &str) -> Option<Value> {
        let object = self.objects.remove(path)?;
        self.bump();
        self.notify(path, "DELETED", object.clone());
        Some(object)
    }

    fn notify(&mut self, path: &str, kind: &'static str, object: Value) {
        let rv = self.resource_version;
        self.history.push((rv, path.into(), kind, object.clone()));
        let line = watch_line(kind, &object);
        self.watchers.retain(|w| {
            if !watched_by(path, &object, &w.collection, &w.selector) {
                return !w.tx.is_closed();
            }
            w.tx.unbounded_send(Ok(Frame::data(line.clone()))).is_ok()
        });
    }

    fn handle(&mut self, parts: &http::request::Parts, body: &[u8]) -> Reply {
        let path = parts.uri.path().to_owned();
        let query = query_map(parts.uri.query());
        let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
        let body_value: Option<Value> = if body.is_empty() { None } else { serde_json::from_slice(body).ok() };
        self.requests.push(Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body_value.clone(),
            status: 0,
        });
        let Some(route) = route(&path) else { return status(404, "NotFound", &format!("no route {path}")) };
        if let Some(sub) = route.subresource.clone() {
            let request = self.requests.last().cloned().expect("recorded above");
            return self.subresource(&route, &sub, &request);
        }
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        match (parts.method.clone(), route.name.is_some()) {
            (Method::GET, true) => self.get(&route, &path),
            (Method::GET, false) if watch => self.watch(&route, &query),
            (Method::GET, false) => self.list(&route, &query),
            (Method::POST, false) => self.create(&route, body_value),
            (Method::PATCH, true) if content_type.as_deref() == Some("application/merge-patch+json") => {
                self.merge_patch(&route, &path, body_value)
            }
            (Method::PATCH, true) => self.apply(&route, &path, &query, content_type.as_deref(), body_value),
            (Method::DELETE, true) => self.delete(&route, &path),
            (method, _) => status(405, "MethodNotAllowed", &format!("{method} {path} is not supported here")),
        }
    }

    fn subresource(&mut self, route: &Route, sub: &str, request: &Recorded) -> Reply {
        let (path, query, content_type) = (request.path.as_str(), &request.query, request.content_type.as_deref());
        let body = request.body.clone();
        let method = request.method.as_str();
        let object_path = path.strip_suffix(&format!("/{sub}")).unwrap_or(path).to_owned();
        match (method, sub) {
            ("PATCH", "status") => {
                if content_type != Some("application/apply-patch+yaml") {
                    return status(415, "UnsupportedMediaType", "only server-side apply is supported");
                }
                if query.get("fieldManager").map(String::as_str) != Some(FIELD_MANAGER) {
                    return status(422, "Invalid", "fieldManager must be cache-demo-ctl");
                }
                let Some(mut object) = self.objects.get(&object_path).cloned() else { return not_found(route) };
                let new_status = body.map(|b| b["status"].clone()).unwrap_or(Value::Null);
                if object["status"] == new_status {
                    return ok(object);
                }
                object["status"] = new_status;
                self.put(&object_path, object);
                ok(self.objects[&object_path].clone())
            }
            ("GET", proxied) if route.plural == "services" && proxied.starts_with("proxy/") => {
                match (&self.app_stats, proxied) {
                    (Some(stats), "proxy/api/stats") => ok(stats.clone()),
                    _ => status(503, "ServiceUnavailable", "error trying to reach service: connection refused"),
                }
            }
            _ => status(405, "MethodNotAllowed", &format!("{method} {path} is not supported here")),
        }
    }

    fn get(&mut self, route: &Route, path: &str) -> Reply {
        if route.plural == "namespaces" && self.finish_namespace_deletion(route, path) {
            return not_found(route);
        }
        if route.plural == "deployments" {
            self.progress_rollout(path);
        }
        match self.objects.get(path) {
            Some(o) => ok(o.clone()),
            None => not_found(route),
        }
    }

    fn list(&mut self, route: &Route, query: &BTreeMap<String, String>) -> Reply {
        let prefix = format!("{}/", route.collection);
        let selector = query.get("labelSelector").cloned().unwrap_or_default();
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(p, _)| p.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
            .filter(|(_, o)| matches_selector(o, &selector))
            .map(|(_, o)| o.clone())
            .collect();
        let kind = kind_of(&route.plural).unwrap_or("Unknown");
        let rv = self.resource_version.to_string();
        ok(
            json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": rv}, "items": items}),
        )
    }

    /// A stream of the collection's changes after the resourceVersion asked for, then of every later one.
    fn watch(&mut self, route: &Route, query: &BTreeMap<String, String>) -> Reply {
        let (tx, rx) = mpsc::unbounded();
        let selector = query.get("labelSelector").cloned().unwrap_or_default();
        let since: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        for (rv, path, kind, object) in &self.history {
            if *rv > since && watched_by(path, object, &route.collection, &selector) {
                let _ = tx.unbounded_send(Ok(Frame::data(watch_line(kind, object))));
            }
        }
        self.watchers.push(Watcher { collection: route.collection.clone(), selector, tx });
        Reply::Watch(rx)
    }

    fn create(&mut self, route: &Route, body: Option<Value>) -> Reply {
        let Some(mut object) = body else { return status(400, "BadRequest", "empty body") };
        let name = match object["metadata"]["name"].as_str() {
            Some(name) => name.to_owned(),
            None => return status(422, "Invalid", "metadata.name is required"),
        };
        let path = format!("{}/{name}", route.collection);
        if self.objects.contains_key(&path) {
            return status(409, "AlreadyExists", &format!("{} \"{name}\" already exists", route.plural));
        }
        object["metadata"]["uid"] = json!(format!("uid-{}", self.resource_version + 1));
        self.put(&path, object);
        Reply::Json(StatusCode::CREATED, self.objects[&path].clone())
    }

    fn merge_patch(&mut self, route: &Route, path: &str, body: Option<Value>) -> Reply {
        let Some(mut object) = self.objects.get(path).cloned() else { return not_found(route) };
        merge(&mut object, &body.unwrap_or(Value::Null));
        self.put(path, object);
        ok(self.objects[path].clone())
    }

    fn apply(
        &mut self,
        route: &Route,
        path: &str,
        query: &BTreeMap<String, String>,
        content_type: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        if content_type != Some("application/apply-patch+yaml") {
            return status(415, "UnsupportedMediaType", "only server-side apply is supported");
        }
        if query.get("fieldManager").map(String::as_str) != Some(FIELD_MANAGER) {
            return status(422, "Invalid", "fieldManager must be cache-demo-ctl");
        }
        if let Some((code, message)) = self.reject.remove(path) {
            return status(code, "Invalid", &message);
        }
        let Some(body) = body else { return status(400, "BadRequest", "empty body") };
        let expected_kind = kind_of(&route.plural);
        if body["kind"].as_str() != expected_kind || body["apiVersion"].as_str().is_none() {
            return status(400, "BadRequest", &format!("kind {} does not belong at {path}", body["kind"]));
        }
        if body["metadata"]["name"].as_str() != route.name.as_deref() {
            return status(400, "BadRequest", "metadata.name does not match the path");
        }
        if let Some(ns) = &route.namespace {
            if body["metadata"]["namespace"].as_str().is_some_and(|n| n != ns) {
                return status(400, "BadRequest", "metadata.namespace does not match the path");
            }
            let ns_path = format!("/api/v1/namespaces/{ns}");
            match self.objects.get(&ns_path) {
                None => return status(404, "NotFound", &format!("namespaces \"{ns}\" not found")),
                Some(n) if n["metadata"]["deletionTimestamp"].is_string() => {
                    return status(403, "Forbidden", &format!("namespace {ns} is being terminated"));
                }
                Some(_) => {}
            }
        }

        let existing = self.objects.get(path).cloned();
        if let Some(existing) = &existing
            && applied_part(existing) == applied_part(&body)
        {
            return ok(existing.clone());
        }
        let mut object = body;
        let kind = expected_kind.unwrap_or_default();
        let next_rv = self.resource_version + 1;
        let meta = &mut object["metadata"];
        match &existing {
            Some(e) => {
                meta["uid"] = e["metadata"]["uid"].clone();
                meta["creationTimestamp"] = e["metadata"]["creationTimestamp"].clone();
                meta["generation"] = e["metadata"]["generation"].clone();
            }
            None => {
                meta["uid"] = json!(format!("uid-{next_rv}"));
                meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                meta["generation"] = json!(0);
            }
        }
        let spec_changed = existing.as_ref().is_none_or(|e| e["spec"] != object["spec"]);
        if spec_changed {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object["metadata"]["generation"] = json!(generation);
        }
        match (kind, &existing) {
            (_, Some(e)) if !e["status"].is_null() => object["status"] = e["status"].clone(),
            ("Namespace", None) => object["status"] = json!({"phase": "Active"}),
            ("CustomResourceDefinition", None) => {
                object["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
            }
            _ => {}
        }
        if kind == "Service" {
            let ip = match &existing {
                Some(e) => e["spec"]["clusterIP"].clone(),
                None => {
                    self.next_cluster_ip += 1;
                    json!(format!("10.96.0.{}", self.next_cluster_ip))
                }
            };
            object["spec"]["clusterIP"] = ip;
        }
        if kind == "Secret"
            && let Some(string_data) = object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            return status(422, "Invalid", &format!("unexpected stringData {string_data}: up must write data"));
        }
        self.put(path, object.clone());
        if self.owner_gone(&object) {
            // The garbage collector deletes what a deleted owner would have owned.
            self.take(path);
            return Reply::Json(StatusCode::CREATED, object);
        }
        if kind == "Deployment" && spec_changed {
            self.roll_out(path, route.namespace.as_deref().unwrap_or_default());
        }
        let stored = self.objects.get(path).cloned().unwrap_or(object);
        let code = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
        Reply::Json(code, stored)
    }

    fn delete(&mut self, route: &Route, path: &str) -> Reply {
        let Some(object) = self.objects.get(path).cloned() else { return not_found(route) };
        if route.plural == "namespaces" {
            let mut object = object;
            object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
            object["status"] = json!({"phase": "Terminating"});
            self.put(path, object);
            return ok(self.objects[path].clone());
        }
        self.take(path);
        self.collect_garbage(&object);
        status(200, "", "deleted")
    }

    /// True when the object names an owner that no longer exists.
    fn owner_gone(&self, object: &Value) -> bool {
        let Some(owners) = object["metadata"]["ownerReferences"].as_array() else { return false };
        owners.iter().any(|owner| !self.objects.values().any(|o| o["metadata"]["uid"] == owner["uid"]))
    }

    /// The garbage collector: what the deleted object owned goes too, and a Deployment's pods with it.
    fn collect_garbage(&mut self, deleted: &Value) {
        if deleted["kind"] == "Deployment" {
            let ns = deleted["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = deleted["metadata"]["name"].as_str().unwrap_or_default();
            let prefix = format!("/api/v1/namespaces/{ns}/pods/{name}-");
            let pods: Vec<String> = self.objects.keys().filter(|p| p.starts_with(&prefix)).cloned().collect();
            for pod in pods {
                self.take(&pod);
            }
        }
        let Some(uid) = deleted["metadata"]["uid"].as_str() else { return };
        let owned: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(p, _)| p.clone())
            .collect();
        for path in owned {
            if let Some(object) = self.take(&path) {
                self.collect_garbage(&object);
            }
        }
    }

    /// True when the namespace has just disappeared (with everything in it).
    fn finish_namespace_deletion(&mut self, route: &Route, path: &str) -> bool {
        let deleting = self.objects.get(path).is_some_and(|n| n["metadata"]["deletionTimestamp"].is_string());
        if !deleting {
            return false;
        }
        if self.namespace_linger > 0 {
            self.namespace_linger -= 1;
            return false;
        }
        let ns = route.name.clone().unwrap_or_default();
        let inside = format!("/namespaces/{ns}/");
        let gone: Vec<String> =
            self.objects.keys().filter(|p| p.as_str() == path || p.contains(&inside)).cloned().collect();
        for p in gone {
            self.take(&p);
        }
        true
    }

    /// The Deployment controller and kubelet: replace the pods, set the status the rollout calls for.
    fn roll_out(&mut self, path: &str, namespace: &str) {
        let Some(deployment) = self.objects.get(path).cloned() else { return };
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        let generation = deployment["metadata"]["generation"].clone();
        let template = deployment["spec"]["template"].clone();
        let pod_prefix = format!("/api/v1/namespaces/{namespace}/pods/{name}-");
        let event_prefix = format!("/api/v1/namespaces/{namespace}/events/{name}-");
        let old: Vec<String> = self
            .objects
            .keys()
            .filter(|p| p.starts_with(&pod_prefix) || p.starts_with(&event_prefix))
            .cloned()
            .collect();
        for p in old {
            self.take(&p);
        }

        let rollout = self.rollouts.get(&name).cloned().unwrap_or(Rollout::ReadyAfterReads(1));
        let container = template["spec"]["containers"][0].clone();
        let container_name = container["name"].clone();
        let image = container["image"].clone();
        for i in 0..replicas {
            let pod_name = format!("{name}-{}-{i:05}", generation);
            let (phase, statuses, conditions) = match &rollout {
                Rollout::ReadyAfterReads(_) => ("Pending", json!([]), json!([])),
                Rollout::Waiting { reason, message } => (
                    "Pending",
                    json!([{"name": container_name, "image": image, "imageID": "", "ready": false,
                            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]),
                    json!([]),
                ),
                Rollout::CrashLoop { restarts } => (
                    "Running",
                    json!([{"name": container_name, "image": image, "imageID": "", "ready": false,
                            "restartCount": restarts, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
                    json!([]),
                ),
                Rollout::ProbeFailing => (
                    "Running",
                    json!([{"name": container_name, "image": image, "imageID": "", "ready": false,
                            "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}}}]),
                    json!([]),
                ),
                Rollout::Unschedulable => (
                    "Pending",
                    json!([]),
                    json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 Insufficient memory."}]),
                ),
            };
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace, "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
                "status": {"phase": phase, "containerStatuses": statuses, "conditions": conditions},
            });
            self.put(&format!("{pod_prefix}{}-{i:05}", generation), pod);
            if matches!(rollout, Rollout::ProbeFailing) {
                let event = json!({
                    "apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": format!("{pod_name}.1"), "namespace": namespace},
                    "type": "Warning", "reason": "Unhealthy",
                    "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": namespace},
                });
                self.put(&format!("{event_prefix}{}-{i:05}.1", generation), event);
            }
        }
        let status = json!({
            "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": replicas,
        });
        if let Some(mut d) = self.objects.get(path).cloned() {
            d["status"] = status;
            self.put(path, d);
        }
        match rollout {
            Rollout::ReadyAfterReads(reads) => {
                self.reads_until_ready.insert(path.into(), reads);
            }
            _ => {
                self.reads_until_ready.remove(path);
            }
        }
    }

    /// Counts a read of the Deployment; at zero its pods turn Running and ready.
    fn progress_rollout(&mut self, path: &str) {
        let Some(left) = self.reads_until_ready.get_mut(path) else { return };
        if *left > 0 {
            *left -= 1;
            return;
        }
        self.reads_until_ready.remove(path);
        let Some(mut d) = self.objects.get(path).cloned() else { return };
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let namespace = d["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        let name = d["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let pod_prefix = format!("/api/v1/namespaces/{namespace}/pods/{name}-");
        let container = d["spec"]["template"]["spec"]["containers"][0].clone();
        let pods: Vec<String> = self.objects.keys().filter(|p| p.starts_with(&pod_prefix)).cloned().collect();
        for pod_path in pods {
            if let Some(mut pod) = self.objects.get(&pod_path).cloned() {
                pod["status"] = json!({
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                                           "ready": true, "restartCount": 0, "started": true,
                                           "state": {"running": {"startedAt": "2026-01-01T00:00:03Z"}}}],
                });
                self.put(&pod_path, pod);
            }
        }
        d["status"]["readyReplicas"] = json!(replicas);
        d["status"]["availableReplicas"] = json!(replicas);
        d["status"]["unavailableReplicas"] = json!(0);
        self.put(path, d);
    }
}

/// One line of a WATCH response.
fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Whether a change of the object at `path` belongs to a WATCH of `collection` with `selector`.
fn watched_by(path: &str, object: &Value, collection: &str, selector: &str) -> bool {
    path.strip_prefix(collection).and_then(|rest| rest.strip_prefix('/')).is_some_and(|name| !name.contains('/'))
        && matches_selector(object, selector)
}
