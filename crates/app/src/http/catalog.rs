//! The catalogue's aggregates, cached: category statistics and the top-rated products.

use std::time::Instant;

use axum::extract::State;
use axum::routing::get;

use super::Routes;
use super::extract::{ApiQuery, CacheVia};
use super::respond::CachedResponse;
use crate::catalog::{ListParams, Target, parse_via};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes() -> Routes {
    Routes::new().route("/api/categories", get(categories)).route("/api/top-products", get(top_products))
}

async fn categories(State(state): State<AppState>, CacheVia(via): CacheVia) -> Result<CachedResponse> {
    let started = Instant::now();
    CachedResponse::fetch(&state, &Target::Categories, via, started).await
}

async fn top_products(State(state): State<AppState>, ApiQuery(p): ApiQuery<ListParams>) -> Result<CachedResponse> {
    let started = Instant::now();
    if p.q.is_some() {
        return Err(Error::bad_request("top-products takes no q parameter"));
    }
    let via = parse_via(p.cache.as_deref())?;
    CachedResponse::fetch(&state, &Target::top(p.limit.as_deref())?, via, started).await
}
