//! Cacheable reads: category stats, product search, top products, one product.

use std::time::Instant;

use super::extract::{ApiPath, ApiQuery, CacheParam, ListParams, parse_bypass, parse_id, parse_limit, parse_query};
use super::respond::CachedResponse;
use crate::catalog::{DEFAULT_SEARCH_LIMIT, DEFAULT_TOP_LIMIT, Target};
use crate::error::{Error, Result};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/categories", get(categories))
        .route("/api/products", get(search))
        .route("/api/top-products", get(top_products))
        .route("/api/products/{id}", get(product))
}

async fn respond(target: Target, state: &AppState, started: Instant, bypass: bool) -> Result<CachedResponse> {
    let cached = target.fetch(state, bypass).await?;
    Ok(CachedResponse { cached, started, db_delay: state.db.delay() })
}

async fn categories(State(state): State<AppState>, ApiQuery(p): ApiQuery<CacheParam>) -> Result<CachedResponse> {
    let started = Instant::now();
    let bypass = parse_bypass(p.cache.as_deref())?;
    respond(Target::Categories, &state, started, bypass).await
}

async fn search(State(state): State<AppState>, ApiQuery(p): ApiQuery<ListParams>) -> Result<CachedResponse> {
    let started = Instant::now();
    let bypass = parse_bypass(p.cache.as_deref())?;
    let limit = parse_limit(p.limit.as_deref(), DEFAULT_SEARCH_LIMIT)?;
    let q = parse_query(p.q.as_deref())?;
    respond(Target::Search { q, limit }, &state, started, bypass).await
}

async fn top_products(State(state): State<AppState>, ApiQuery(p): ApiQuery<ListParams>) -> Result<CachedResponse> {
    let started = Instant::now();
    if p.q.is_some() {
        return Err(Error::bad_request("top-products takes no q parameter"));
    }
    let bypass = parse_bypass(p.cache.as_deref())?;
    let limit = parse_limit(p.limit.as_deref(), DEFAULT_TOP_LIMIT)?;
    respond(Target::Top { limit }, &state, started, bypass).await
}

async fn product(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<CacheParam>,
) -> Result<CachedResponse> {
    let started = Instant::now();
    let id = parse_id(&id)?;
    let bypass = parse_bypass(p.cache.as_deref())?;
    respond(Target::Product { id }, &state, started, bypass).await
}
