//! Product writes: validate, write to PostgreSQL in one statement, then invalidate what the change made stale.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, response::IntoResponse};
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, ApiPath, parse_id};
use crate::cache::{Invalidation, Primed, Scope};
use crate::catalog::Target;
use crate::db::{NewProduct, Product, ProductPatch};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/products", post(create))
        .route("/api/products/{id}", axum::routing::put(update).delete(delete))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: f64,
    #[serde(default)]
    pub stock: i32,
    pub category_id: i32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<f64>,
    pub stock: Option<i32>,
    pub category_id: Option<i32>,
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

const MAX_PRICE: f64 = 99_999_999.99;

fn validate_sku(sku: &str) -> Result<String> {
    let sku = sku.trim();
    if sku.is_empty() || sku.len() > 32 || !sku.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::invalid("sku", "1-32 characters from A-Z, a-z, 0-9 and '-'"));
    }
    Ok(sku.to_owned())
}

fn validate_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(Error::invalid("name", "at most 200 characters"));
    }
    Ok(name.to_owned())
}

fn validate_description(d: &str) -> Result<String> {
    if d.chars().count() > 2000 {
        return Err(Error::invalid("description", "at most 2000 characters"));
    }
    Ok(d.trim().to_owned())
}

fn validate_price(price: f64) -> Result<f64> {
    if !price.is_finite() || price < 0.0 {
        return Err(Error::invalid("price", "must be a number of at least 0"));
    }
    if price > MAX_PRICE {
        return Err(Error::invalid("price", format!("must be at most {MAX_PRICE}")));
    }
    let cents = price * 100.0;
    if (cents - cents.round()).abs() > 1e-6 {
        return Err(Error::invalid("price", "at most two decimal places"));
    }
    Ok(price)
}

fn validate_stock(stock: i32) -> Result<i32> {
    if stock < 0 {
        return Err(Error::invalid("stock", "must be at least 0"));
    }
    Ok(stock)
}

fn validate_category(id: i32) -> Result<i32> {
    if id < 1 {
        return Err(Error::invalid("category_id", "must be a positive category id"));
    }
    Ok(id)
}

impl CreateBody {
    pub fn validate(self) -> Result<NewProduct> {
        Ok(NewProduct {
            sku: validate_sku(&self.sku)?,
            name: validate_name(&self.name)?,
            description: validate_description(&self.description)?,
            price: validate_price(self.price)?,
            stock: validate_stock(self.stock)?,
            category_id: validate_category(self.category_id)?,
        })
    }
}

impl UpdateBody {
    pub fn validate(self) -> Result<ProductPatch> {
        let patch = ProductPatch {
            sku: self.sku.as_deref().map(validate_sku).transpose()?,
            name: self.name.as_deref().map(validate_name).transpose()?,
            description: self.description.as_deref().map(validate_description).transpose()?,
            price: self.price.map(validate_price).transpose()?,
            stock: self.stock.map(validate_stock).transpose()?,
            category_id: self.category_id.map(validate_category).transpose()?,
        };
        let ProductPatch { sku, name, description, price, stock, category_id } = &patch;
        if sku.is_none()
            && name.is_none()
            && description.is_none()
            && price.is_none()
            && stock.is_none()
            && category_id.is_none()
        {
            return Err(Error::bad_request("nothing to update: give at least one field"));
        }
        Ok(patch)
    }
}

async fn create(State(state): State<AppState>, ApiJson(body): ApiJson<CreateBody>) -> Result<impl IntoResponse> {
    let new = body.validate()?;
    let product = state.db.create_product(&new).await?;
    // A new product changes searches, top lists and category stats; it has no entry of its own yet.
    let invalidated = state.cache.invalidate(&[Scope::Catalog]).await;
    let write_through = write_through(&state, product.id).await;
    tracing::info!(product_id = product.id, invalidated = invalidated.count, "product created");
    Ok((StatusCode::CREATED, Json(WriteResponse { product, invalidated, write_through })))
}

async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<impl IntoResponse> {
    let id = parse_id(&id)?;
    let patch = body.validate()?;
    let product = state.db.update_product(id, &patch).await?.ok_or_else(|| Error::NotFound(format!("product {id}")))?;
    let invalidated = state.cache.invalidate(&[Scope::Product(id), Scope::Catalog]).await;
    let write_through = write_through(&state, id).await;
    tracing::info!(product_id = id, invalidated = invalidated.count, "product updated");
    Ok(Json(WriteResponse { product, invalidated, write_through }))
}

async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<impl IntoResponse> {
    let id = parse_id(&id)?;
    if !state.db.delete_product(id).await? {
        return Err(Error::NotFound(format!("product {id}")));
    }
    let invalidated = state.cache.invalidate(&[Scope::Product(id), Scope::Catalog]).await;
    tracing::info!(product_id = id, invalidated = invalidated.count, "product deleted");
    Ok(Json(DeleteResponse { deleted: id, invalidated }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> CreateBody {
        CreateBody {
            sku: "NEW-1".into(),
            name: "Thing".into(),
            description: String::new(),
            price: 9.99,
            stock: 1,
            category_id: 1,
        }
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn valid_body_passes() {
        assert!(body().validate().is_ok());
    }

    #[test]
    fn invalid_fields_are_named() {
        assert_eq!(field_of(CreateBody { price: -1.0, ..body() }.validate().unwrap_err()), "price");
        assert_eq!(field_of(CreateBody { price: 1.234, ..body() }.validate().unwrap_err()), "price");
        assert_eq!(field_of(CreateBody { price: f64::NAN, ..body() }.validate().unwrap_err()), "price");
        assert_eq!(field_of(CreateBody { name: "  ".into(), ..body() }.validate().unwrap_err()), "name");
        assert_eq!(field_of(CreateBody { stock: -3, ..body() }.validate().unwrap_err()), "stock");
        assert_eq!(field_of(CreateBody { sku: "a b".into(), ..body() }.validate().unwrap_err()), "sku");
        assert_eq!(field_of(CreateBody { category_id: 0, ..body() }.validate().unwrap_err()), "category_id");
    }

    #[test]
    fn empty_update_is_rejected() {
        assert!(matches!(UpdateBody::default().validate(), Err(Error::BadRequest { .. })));
        assert!(UpdateBody { stock: Some(3), ..Default::default() }.validate().is_ok());
    }
}
