//! One reconcile of one CacheDemo: apply its children, observe them, write the status if it changed, and say
//! each change of state with an Event.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::status::{self, Component, Figures, Observed};
use super::{Context, Error};
use crate::apply::{self, Applied};
use crate::crd::{CacheDemo, CacheDemoStatus};
use crate::objects::{self, APP_PORT, Object, Objects};
use crate::settings::names;

pub async fn reconcile(demo: Arc<CacheDemo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = demo.name_any();
    let (Some(ns), Some(owner)) = (demo.namespace(), demo.controller_owner_ref(&())) else {
        return Err(Error::Incomplete(name));
    };
    // The watch may lag behind a deletion: look at the object itself before creating children for it. (The
    // garbage collector removes the children of a deleted owner, even ones created in the race.)
    let api: Api<CacheDemo> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api
        .get_opt(&name)
        .await
        .map_err(|source| Error::Kube { action: format!("reading cachedemo/{name}"), source })?;
    let Some(demo) = current.filter(|d| d.meta().deletion_timestamp.is_none() && d.uid() == demo.uid()) else {
        return Ok(Action::await_change());
    };
    let previous = demo.status.clone().unwrap_or_default();
    let settings = demo.spec.settings(&ns);
    if let Err(invalid) = settings.validate() {
        let next = status::blocked(&previous, demo.meta().generation, "InvalidSpec", &invalid.to_string(), &now());
        write_status(&ctx, &demo, &previous, next).await?;
        return Err(Error::Invalid(invalid));
    }
    // Object names are fixed (users type them): one CacheDemo per namespace, the oldest.
    if let Some(owner) = older_sibling(&ctx, &demo, &ns).await? {
        let message = format!(
            "cachedemo/{owner} already deploys cache-demo in namespace {ns}: delete one of them, or use another \
             namespace"
        );
        let next = status::blocked(&previous, demo.meta().generation, "Conflict", &message, &now());
        write_status(&ctx, &demo, &previous, next).await?;
        return Ok(Action::requeue(ctx.config.requeue));
    }

    let (credentials, generated) = apply::read_credentials(&ctx.client, &ns).await?;
    let objects = Objects::build(&settings, &credentials).owned_by(&owner);
    let mut changed = Vec::new();
    for object in objects.all() {
        if matches!(object, Object::Namespace(_)) {
            continue;
        }
        let outcome = apply::apply_object(&ctx.client, &object).await?;
        if outcome != Applied::Unchanged {
            changed.push(format!("{outcome} {}", object.label()));
        }
    }
    if !changed.is_empty() {
        let mut note = changed.join(", ");
        if !generated.is_empty() {
            note.push_str(&format!(" (generated {})", generated.join(", ")));
        }
        publish(&ctx, &demo, EventType::Normal, "Applied", "Apply", note).await;
    }

    let observed = observe(&ctx, &demo, &ns, &objects).await?;
    let next = status::build(&observed, &previous, &now());
    let ready = next.conditions.iter().any(|c| c.type_ == status::READY && c.status == "True");
    write_status(&ctx, &demo, &previous, next).await?;
    Ok(Action::requeue(if ready { ctx.config.requeue } else { ctx.config.requeue_progressing }))
}

/// The CacheDemo in the namespace that came first, when it is not this one.
async fn older_sibling(ctx: &Context, demo: &CacheDemo, ns: &str) -> Result<Option<String>, Error> {
    let api: Api<CacheDemo> = Api::namespaced(ctx.client.clone(), ns);
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Kube { action: "listing cachedemos".into(), source })?;
    let key = |d: &CacheDemo| (d.meta().creation_timestamp.clone().map(|t| t.0), d.name_any());
    let first = all.items.iter().filter(|d| d.meta().deletion_timestamp.is_none()).min_by_key(|d| key(d));
    Ok(first.map(|d| d.name_any()).filter(|name| *name != demo.name_any()))
}

/// Writes the status when it differs from what the object says, with an Event per condition that changed.
async fn write_status(
    ctx: &Context,
    demo: &CacheDemo,
    previous: &CacheDemoStatus,
    next: CacheDemoStatus,
) -> Result<(), Error> {
    if demo.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let name = demo.name_any();
    let api: Api<CacheDemo> = Api::namespaced(ctx.client.clone(), &demo.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": crate::crd::CacheDemo::api_version(&()),
        "kind": crate::crd::CacheDemo::kind(&()),
        "status": next,
    });
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Kube { action: format!("writing the status of cachedemo/{name}"), source })?;
    for condition in status::transitions(previous, &next) {
        let healthy = match condition.type_.as_str() {
            status::DEGRADED => condition.status != "True",
            status::READY => condition.status == "True",
            _ => true,
        };
        let type_ = if healthy { EventType::Normal } else { EventType::Warning };
        let note = format!("{} is {}: {}", condition.type_, condition.status, condition.message);
        publish(ctx, demo, type_, &condition.reason, "Reconcile", note).await;
    }
    Ok(())
}

/// Events help a person; failing to record one never fails a reconcile.
async fn publish(ctx: &Context, demo: &CacheDemo, type_: EventType, reason: &str, action: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.chars().take(128).collect(),
        note: Some(note.chars().take(1024).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &demo.object_ref(&())).await {
        eprintln!("operator: cannot record an event for cachedemo/{}: {e}", demo.name_any());
    }
}

/// The Deployments with their pods, the namespace's events, the app's figures and the URL.
async fn observe(ctx: &Context, demo: &CacheDemo, ns: &str, objects: &Objects) -> Result<Observed, Error> {
    let client = &ctx.client;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut components = Vec::new();
    for d in [&objects.postgres, &objects.redis, &objects.app] {
        let name = d.metadata.name.clone().unwrap_or_default();
        let deployment = deployments
            .get_opt(&name)
            .await
            .map_err(|source| Error::Kube { action: format!("reading deployment/{name}"), source })?;
        let selector = objects::label_selector_query(&objects::selector_labels(&name));
        let listed = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| Error::Kube { action: format!("listing pods of {name}"), source })?;
        components.push(Component { name, deployment, pods: listed.items });
    }
    let all_ready = components.iter().all(|c| c.deployment.as_ref().is_some_and(crate::diagnose::is_ready));
    // Events explain a stuck pod; a user's cluster may not let us read them, which only costs detail.
    let events = match all_ready {
        true => Vec::new(),
        false => Api::<CoreEvent>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
    };
    let app_ready = components.last().and_then(|c| c.deployment.as_ref()).is_some_and(crate::diagnose::is_ready);
    let kept = demo.status.as_ref().and_then(|s| s.cache.clone());
    let figures = if !app_ready {
        Figures::Unknown
    } else if let Some(kept) = kept.filter(|_| !ctx.figures_due(&format!("{ns}/{}", demo.name_any()))) {
        Figures::Kept(kept)
    } else {
        Figures::Read(app_stats(ctx, ns).await.map(Box::new))
    };
    let url = apply::node_address(client).await.map(|address| format!("http://{address}:{}/", demo.spec.node_port));
    Ok(Observed {
        generation: demo.meta().generation,
        components,
        events,
        figures,
        url,
        namespace: ns.into(),
        app_image: demo.spec.image.clone(),
    })
}

/// The app's `/api/stats` through its Service (the API server's service proxy, so it works in the cluster
/// and from a laptop alike), bounded in time; None when it cannot be read.
async fn app_stats(ctx: &Context, ns: &str) -> Option<cache_demo_api::Stats> {
    let path = format!("/api/v1/namespaces/{ns}/services/{}:{APP_PORT}/proxy/api/stats", names::APP);
    let request = http::Request::get(path).body(Vec::new()).ok()?;
    let text = tokio::time::timeout(ctx.config.stats_timeout, ctx.client.request_text(request)).await.ok()?.ok()?;
    serde_json::from_str(&text).ok()
}

fn now() -> String {
    Timestamp::now().to_string()
}
