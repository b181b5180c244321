//! A product's fields as a write sends them, checked before anything is written: each failure names its
//! field (422).

use serde::Deserialize;

use crate::db::{NewProduct, ProductPatch};
use crate::error::{Error, Result};

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
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "must not contain control characters"));
    }
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(Error::invalid("name", "at most 200 characters"));
    }
    Ok(name.to_owned())
}

fn validate_description(d: &str) -> Result<String> {
    // PostgreSQL's text cannot hold NUL; line breaks and tabs are fine in a description.
    if d.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(Error::invalid(
            "description",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    if d.chars().count() > 2000 {
        return Err(Error::invalid("description", "at most 2000 characters"));
    }
    Ok(d.trim().to_owned())
}

pub(crate) fn validate_price(price: f64) -> Result<f64> {
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
    fn text_postgresql_would_reject_is_named() {
        assert_eq!(field_of(CreateBody { name: "a\0b".into(), ..body() }.validate().unwrap_err()), "name");
        let nul = CreateBody { description: "a\0b".into(), ..body() };
        assert_eq!(field_of(nul.validate().unwrap_err()), "description");
        assert!(CreateBody { description: "line\nbreak\ttab".into(), ..body() }.validate().is_ok());
        assert_eq!(field_of(CreateBody { price: 1e300, ..body() }.validate().unwrap_err()), "price");
    }

    #[test]
    fn empty_update_is_rejected() {
        assert!(matches!(UpdateBody::default().validate(), Err(Error::BadRequest { .. })));
        assert!(UpdateBody { stock: Some(3), ..Default::default() }.validate().is_ok());
    }
}
