//! The catalogue as the cache sees it: [`Target`] is the one definition of "which cache key and which query"
//! for each cacheable endpoint. The HTTP handlers, the dashboard's comparison and load test, cache warming
//! and write-through all go through it.

use serde::{Deserialize, Serialize};

use crate::cache::{CacheKey, Cached, Primed};
use crate::db::{CategoryStats, ProductDetail, ProductSummary, TopProduct};
use crate::error::{Error, Result};
use crate::http::extract::{parse_id, parse_limit, parse_query};
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

pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub const DEFAULT_TOP_LIMIT: u32 = 10;

/// `endpoint=categories|search|top|product` plus its parameters, as the dashboard sends them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetParams {
    pub endpoint: Option<String>,
    pub q: Option<String>,
    pub limit: Option<String>,
    pub id: Option<String>,
}

impl Target {
    pub fn from_params(p: &TargetParams) -> Result<Target> {
        let endpoint = p.endpoint.as_deref().unwrap_or_default();
        let target = match endpoint {
            "categories" => Target::Categories,
            "search" => Target::Search {
                q: parse_query(p.q.as_deref())?,
                limit: parse_limit(p.limit.as_deref(), DEFAULT_SEARCH_LIMIT)?,
            },
            "top" => Target::Top { limit: parse_limit(p.limit.as_deref(), DEFAULT_TOP_LIMIT)? },
            "product" => Target::Product {
                id: parse_id(p.id.as_deref().ok_or_else(|| Error::bad_request("endpoint=product needs an id"))?)?,
            },
            other => {
                return Err(Error::bad_request(format!(
                    "endpoint must be one of categories, search, top, product; got {other:?}"
                )));
            }
        };
        let unused = match &target {
            Target::Categories => p.q.is_some() || p.limit.is_some() || p.id.is_some(),
            Target::Search { .. } => p.id.is_some(),
            Target::Top { .. } => p.q.is_some() || p.id.is_some(),
            Target::Product { .. } => p.q.is_some() || p.limit.is_some(),
        };
        if unused {
            return Err(Error::bad_request(format!("parameters given that endpoint={endpoint} does not take")));
        }
        Ok(target)
    }

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

    /// Cache-aside fetch (or database only with `bypass`).
    pub async fn fetch(&self, state: &AppState, bypass: bool) -> Result<Cached> {
        state.cache.get_or_load(&self.key(), bypass, || self.load(state)).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(endpoint: &str, q: Option<&str>, limit: Option<&str>, id: Option<&str>) -> TargetParams {
        TargetParams {
            endpoint: Some(endpoint.into()),
            q: q.map(Into::into),
            limit: limit.map(Into::into),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn targets_parse_and_key_like_the_public_endpoints() {
        let t = Target::from_params(&params("search", Some(" Laptop "), None, None)).expect("valid");
        assert_eq!(t, Target::Search { q: "laptop".into(), limit: 20 });
        assert_eq!(t.key(), CacheKey::search("laptop", 20));
        assert_eq!(t.path(), "/api/products?q=laptop&limit=20");
        let t = Target::from_params(&params("product", None, None, Some("7"))).expect("valid");
        assert_eq!(t.key(), CacheKey::product(7));
        assert_eq!(Target::from_params(&params("top", None, None, None)).ok(), Some(Target::Top { limit: 10 }));
    }

    #[test]
    fn bad_targets_are_rejected() {
        assert!(Target::from_params(&params("users", None, None, None)).is_err());
        assert!(Target::from_params(&TargetParams::default()).is_err());
        assert!(Target::from_params(&params("product", None, None, None)).is_err());
        assert!(Target::from_params(&params("product", None, None, Some("x"))).is_err());
        assert!(Target::from_params(&params("top", None, Some("0"), None)).is_err());
        assert!(Target::from_params(&params("categories", Some("x"), None, None)).is_err());
    }
}
