//! Cacheable reads: category stats, product search, top products, one product.

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use super::extract::{ApiPath, ApiQuery, CacheParam, ListParams, parse_bypass, parse_id, parse_limit, parse_query};
use super::respond::CachedResponse;
use crate::cache::CacheKey;
use crate::db::{CategoryStats, ProductSummary, TopProduct};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/categories", get(categories))
        .route("/api/products", get(search))
        .route("/api/top-products", get(top_products))
        .route("/api/products/{id}", get(product))
}

#[derive(Serialize)]
struct CategoriesData {
    categories: Vec<CategoryStats>,
}

#[derive(Serialize)]
struct SearchData {
    query: String,
    limit: u32,
    count: usize,
    products: Vec<ProductSummary>,
}

#[derive(Serialize)]
struct TopData {
    limit: u32,
    products: Vec<TopProduct>,
}

fn respond(state: &AppState, started: Instant, cached: crate::cache::Cached) -> CachedResponse {
    CachedResponse { cached, started, db_delay: state.db.delay() }
}

async fn categories(State(state): State<AppState>, ApiQuery(p): ApiQuery<CacheParam>) -> Result<CachedResponse> {
    let started = Instant::now();
    let bypass = parse_bypass(p.cache.as_deref())?;
    let db = &state.db;
    let cached = state
        .cache
        .get_or_load(&CacheKey::categories(), bypass, || async {
            Ok(CategoriesData { categories: db.category_stats().await? })
        })
        .await?;
    Ok(respond(&state, started, cached))
}

async fn search(State(state): State<AppState>, ApiQuery(p): ApiQuery<ListParams>) -> Result<CachedResponse> {
    let started = Instant::now();
    let bypass = parse_bypass(p.cache.as_deref())?;
    let limit = parse_limit(p.limit.as_deref(), 20)?;
    let query = parse_query(p.q.as_deref())?;
    let db = &state.db;
    let key = CacheKey::search(&query, limit);
    let cached = state
        .cache
        .get_or_load(&key, bypass, || async {
            let products = db.search_products(&query, limit).await?;
            Ok(SearchData { count: products.len(), query: query.clone(), limit, products })
        })
        .await?;
    Ok(respond(&state, started, cached))
}

async fn top_products(State(state): State<AppState>, ApiQuery(p): ApiQuery<ListParams>) -> Result<CachedResponse> {
    let started = Instant::now();
    if p.q.is_some() {
        return Err(Error::bad_request("top-products takes no q parameter"));
    }
    let bypass = parse_bypass(p.cache.as_deref())?;
    let limit = parse_limit(p.limit.as_deref(), 10)?;
    let db = &state.db;
    let cached = state
        .cache
        .get_or_load(&CacheKey::top_products(limit), bypass, || async {
            Ok(TopData { limit, products: db.top_products(limit).await? })
        })
        .await?;
    Ok(respond(&state, started, cached))
}

async fn product(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<CacheParam>,
) -> Result<CachedResponse> {
    let started = Instant::now();
    let id = parse_id(&id)?;
    let bypass = parse_bypass(p.cache.as_deref())?;
    let db = &state.db;
    let cached = state
        .cache
        .get_or_load(&CacheKey::product(id), bypass, || async {
            db.product(id).await?.ok_or_else(|| Error::NotFound(format!("product {id}")))
        })
        .await?;
    Ok(respond(&state, started, cached))
}
