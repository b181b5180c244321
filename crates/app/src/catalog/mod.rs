//! The catalogue as the cache sees it: [`Target`] is the one definition of "which cache key and which query"
//! for each cacheable endpoint. The HTTP handlers, the dashboard's comparison and load test, cache warming
//! and write-through all go through it. Its parameters are parsed in `params`, a product's fields checked in
//! `input`: the API and the dashboard validate with the same code.

pub mod input;
pub mod params;

use serde::Serialize;

pub use self::params::{CacheParam, ListParams, TargetParams, parse_id, parse_via};
use crate::cache::{CacheKey, Cached, Primed, Via};
use crate::db::{CategoryStats, ProductDetail, ProductSummary, TopProduct};
use crate::error::{Error, Result};
use crate::state::AppState;

/// One cacheable request, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "endpoint", rename_all = "snake_case")]
pub enum Target {
    Categories,
    Search { q: String, limit: u32 },
    Top { limit: u32 },
    Product { id: i32 },
}

impl Target {
    pub fn key(&self) -> CacheKey {
        match self {
            Target::Categories => CacheKey::categories(),
            Target::Search { q, limit } => CacheKey::search(q, *limit),
            Target::Top { limit } => CacheKey::top_products(*limit),
            Target::Product { id } => CacheKey::product(*id),
        }
    }

    /// The public URL of this request, for display.
    pub fn path(&self) -> String {
        match self {
            Target::Categories => "/api/categories".into(),
            Target::Search { q, limit } => format!("/api/products?q={}&limit={limit}", q.replace(' ', "+")),
            Target::Top { limit } => format!("/api/top-products?limit={limit}"),
            Target::Product { id } => format!("/api/products/{id}"),
        }
    }

    /// The query behind this target, straight from PostgreSQL.
    pub async fn load(&self, state: &AppState) -> Result<Payload> {
        let db = &state.db;
        Ok(match self {
            Target::Categories => Payload::Categories(CategoriesData { categories: db.category_stats().await? }),
            Target::Search { q, limit } => {
                let products = db.search_products(q, *limit).await?;
                Payload::Search(SearchData { count: products.len(), query: q.clone(), limit: *limit, products })
            }
            Target::Top { limit } => Payload::Top(TopData { limit: *limit, products: db.top_products(*limit).await? }),
            Target::Product { id } => Payload::Product(Box::new(
                db.product(*id).await?.ok_or_else(|| Error::NotFound(format!("product {id}")))?,
            )),
        })
    }

    /// Cache-aside fetch, or from the database only.
    pub async fn fetch(&self, state: &AppState, via: Via) -> Result<Cached> {
        // Reads that skip the cache share part of the pool, so a flood of them leaves connections for the rest.
        let _permit = match via {
            Via::DatabaseOnly => Some(state.admission.bypass().await?),
            Via::Cache | Via::CacheUncoalesced => None,
        };
        state.cache.get_or_load(&self.key(), via, || self.load(state)).await
    }

    /// Puts the value in the cache if it is not there (warming, write-through); not counted as a request.
    pub async fn prime(&self, state: &AppState) -> Result<Primed> {
        state.cache.prime(&self.key(), || self.load(state)).await
    }
}

/// The JSON payload (`data`) of each target, serialized as its inner value.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Payload {
    Categories(CategoriesData),
    Search(SearchData),
    Top(TopData),
    Product(Box<ProductDetail>),
}

#[derive(Serialize)]
pub struct CategoriesData {
    categories: Vec<CategoryStats>,
}

#[derive(Serialize)]
pub struct SearchData {
    query: String,
    limit: u32,
    count: usize,
    products: Vec<ProductSummary>,
}

#[derive(Serialize)]
pub struct TopData {
    limit: u32,
    products: Vec<TopProduct>,
}
