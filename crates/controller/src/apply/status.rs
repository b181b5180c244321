//! `status`: every object the settings describe, whether it is there and ready.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::Api;

use super::{Error, get, list_pods};
use crate::diagnose;
use crate::objects::{Credentials, Object, Objects};
use crate::settings::Settings;

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub kind: &'static str,
    pub name: String,
    pub state: String,
    pub ready: bool,
}

/// Looks up every object the settings describe and says whether it is there and ready.
pub async fn status(client: &Client, settings: &Settings) -> Result<Vec<StatusRow>, Error> {
    settings.validate()?;
    let objects = Objects::build(settings, &Credentials::Placeholders);
    let ns = settings.namespace.as_str();
    let namespace = get(Api::<Namespace>::all(client.clone()), ns).await?;
    let namespace_exists = namespace.is_some();
    let mut rows = Vec::new();
    for object in objects.all() {
        let name = object.name().to_owned();
        let missing = || (String::from("missing"), false);
        let (state, ready) = match &object {
            Object::Namespace(_) => match &namespace {
                Some(n) => {
                    let phase = n.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Active".into());
                    let ready = phase == "Active";
                    (phase, ready)
                }
                None => missing(),
            },
            _ if !namespace_exists => missing(),
            Object::Secret(_) => match get(Api::<Secret>::namespaced(client.clone(), ns), &name).await? {
                Some(secret) => {
                    let data = secret.data.unwrap_or_default();
                    let absent: Vec<_> = crate::settings::secret_keys::ALL
                        .iter()
                        .filter(|k| data.get(**k).is_none_or(|v| v.0.is_empty()))
                        .collect();
                    match absent.is_empty() {
                        true => (format!("{} keys", data.len()), true),
                        false => (format!("missing keys: {absent:?}"), false),
                    }
                }
                None => missing(),
            },
            Object::ConfigMap(_) => present(get(Api::<ConfigMap>::namespaced(client.clone(), ns), &name).await?),
            Object::NetworkPolicy(_) => {
                present(get(Api::<NetworkPolicy>::namespaced(client.clone(), ns), &name).await?)
            }
            Object::PersistentVolumeClaim(_) => {
                match get(Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns), &name).await? {
                    Some(pvc) => {
                        let phase = pvc.status.and_then(|s| s.phase).unwrap_or_else(|| "Pending".into());
                        let ready = phase == "Bound";
                        (phase, ready)
                    }
                    None => missing(),
                }
            }
            Object::Service(_) => match get(Api::<Service>::namespaced(client.clone(), ns), &name).await? {
                Some(service) => (describe_service(&service), true),
                None => missing(),
            },
            Object::Deployment(_) => match get(Api::<Deployment>::namespaced(client.clone(), ns), &name).await? {
                Some(d) if diagnose::is_ready(&d) => (diagnose::summary(&d), true),
                Some(d) => {
                    let pods = list_pods(client, ns, &name).await?;
                    let state = diagnose::short_state(&pods).map(|s| format!(" ({s})")).unwrap_or_default();
                    (format!("{}{state}", diagnose::summary(&d)), false)
                }
                None => missing(),
            },
            // Operator mode's own objects are not part of a deployment's objects.
            _ => continue,
        };
        rows.push(StatusRow { kind: object.kind(), name, state, ready });
    }
    Ok(rows)
}

fn present<K>(object: Option<K>) -> (String, bool) {
    match object {
        Some(_) => ("present".into(), true),
        None => ("missing".into(), false),
    }
}

/// `NodePort 8000:30080/TCP` or `ClusterIP 10.96.0.12 5432/TCP`.
fn describe_service(service: &Service) -> String {
    let Some(spec) = &service.spec else { return "present".into() };
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(node) => format!("{}:{node}/{protocol}", p.port),
                None => format!("{}/{protocol}", p.port),
            }
        })
        .collect();
    match spec.cluster_ip.as_deref() {
        Some(ip) if kind == "ClusterIP" => format!("{kind} {ip} {}", ports.join(",")),
        _ => format!("{kind} {}", ports.join(",")),
    }
}
