//! `/api/products` and `/api/products/{id}`: the cached reads (search, one product) and the writes. A write
//! validates, writes to PostgreSQL in one statement, then invalidates what the change made stale. With
//! `ADMIN_TOKEN` set, writes need the bearer token ([`Admin`]); reads stay open.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, response::IntoResponse};
use serde::Serialize;

use super::extract::{Admin, ApiJson, ApiPath, ApiQuery, CacheVia};
use super::respond::CachedResponse;
use super::{DirectFuture, Routes};
use crate::cache::{Invalidation, Primed, Scope, Via};
use crate::catalog::input::{CreateBody, UpdateBody};
use crate::catalog::{ListParams, Target, parse_id, parse_via};
use crate::db::Product;
use crate::error::{Error, Result};
use crate::state::AppState;

/// One product's route.
const PRODUCT: &str = "/api/products/{id}";

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/products", get(search).post(create))
        .route(PRODUCT, get(product).put(update).delete(delete))
        .direct_get(PRODUCT, product_direct)
}

/// `GET /api/products?q=&limit=`: search (a list without `q`), cached.
async fn search(State(state): State<AppState>, ApiQuery(p): ApiQuery<ListParams>) -> Result<CachedResponse> {
    let started = Instant::now();
    let via = parse_via(p.cache.as_deref())?;
    let target = Target::search(p.q.as_deref(), p.limit.as_deref())?;
    CachedResponse::fetch(&state, &target, via, started).await
}

/// `GET /api/products/{id}`: one product with its review summary, cached.
async fn product(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    CacheVia(via): CacheVia,
) -> Result<CachedResponse> {
    let started = Instant::now();
    let target = Target::product(&id)?;
    CachedResponse::fetch(&state, &target, via, started).await
}

/// `GET /api/products/{id}` without a query string and with a valid id, the cache's hot path, answered as
/// [`product`] answers it, without the router's work (about an eighth of a cache hit's instructions). Any other
/// request (`?cache=`, an id the router must percent-decode or reject) goes through the router.
fn product_direct(state: &AppState, params: &matchit::Params<'_, '_>, started: Instant) -> Option<DirectFuture> {
    let target = Target::product(params.get("id")?).ok()?;
    let state = state.clone();
    Some(Box::pin(async move { CachedResponse::fetch(&state, &target, Via::Cache, started).await.into_response() }))
}

#[derive(Serialize)]
struct WriteResponse {
    product: Product,
    invalidated: Invalidation,
    /// With `WRITE_THROUGH=true`: whether the new product page was stored in the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    write_through: Option<&'static str>,
}

/// Write-through: after the invalidation, load the product again and store it. It is an ordinary miss under
/// a fresh generation token, so a concurrent later write still wins.
async fn write_through(state: &AppState, id: i32) -> Option<&'static str> {
    if !state.config.write_through {
        return None;
    }
    let result = match (Target::Product { id }).prime(state).await {
        Ok(Primed::Stored(_)) => "stored",
        Ok(Primed::AlreadyCached(_)) => "already-cached",
        Ok(Primed::NotStored(_)) | Err(_) => "skipped",
    };
    state.metrics.write_through.with_label_values(&[result]).inc();
    Some(result)
}

#[derive(Serialize)]
struct DeleteResponse {
    deleted: i32,
    invalidated: Invalidation,
}

/// Runs a write and its invalidation to the end even when the client goes away: sqlx does not cancel a dropped
/// query, so the statement may commit anyway, and its invalidation must follow it. The handler only awaits it.
async fn to_completion<T: Send + 'static>(write: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    tokio::spawn(write).await.unwrap_or_else(|_| Err(Error::Internal("a write task panicked")))
}

async fn create(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<impl IntoResponse> {
    let new = body.validate()?;
    let response = to_completion(async move {
        let product = state.db.create_product(&new).await?;
        // A new product changes searches, top lists and category stats. It has no entry of its own yet, but a
        // load of its id may be running (it will find nothing): a new token keeps later reads from sharing it.
        let invalidated = state.cache.invalidate(&[Scope::Product(product.id), Scope::Catalog]).await;
        let write_through = write_through(&state, product.id).await;
        tracing::info!(product_id = product.id, invalidated = invalidated.count, "product created");
        Ok(WriteResponse { product, invalidated, write_through })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(response)))
}

async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: Admin,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<impl IntoResponse> {
    let id = parse_id(&id)?;
    let patch = body.validate()?;
    let response = to_completion(async move {
        let updated = state.db.update_product(id, &patch).await;
        // Whatever the outcome, even an error after the statement was sent: invalidate.
        if !matches!(updated, Ok(None)) {
            let invalidated = state.cache.invalidate(&[Scope::Product(id), Scope::Catalog]).await;
            if let Ok(Some(product)) = updated {
                let write_through = write_through(&state, id).await;
                tracing::info!(product_id = id, invalidated = invalidated.count, "product updated");
                return Ok(WriteResponse { product, invalidated, write_through });
            }
        }
        Err(updated.err().unwrap_or_else(|| Error::NotFound(format!("product {id}"))))
    })
    .await?;
    Ok(Json(response))
}

async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<String>, _: Admin) -> Result<impl IntoResponse> {
    let id = parse_id(&id)?;
    let response = to_completion(async move {
        let deleted = state.db.delete_product(id).await;
        if matches!(deleted, Ok(false)) {
            return Err(Error::NotFound(format!("product {id}")));
        }
        // Invalidate even after an error: the outcome of a statement that was sent is uncertain.
        let invalidated = state.cache.invalidate(&[Scope::Product(id), Scope::Catalog]).await;
        deleted?;
        tracing::info!(product_id = id, invalidated = invalidated.count, "product deleted");
        Ok(DeleteResponse { deleted: id, invalidated })
    })
    .await?;
    Ok(Json(response))
}
