//! Extractors whose rejections are our JSON errors, and the parsers of ids, limits and `cache=`.

use axum::extract::{FromRequest, FromRequestParts};
use serde::Deserialize;

use crate::error::{Error, Result};

/// `axum::Json` with rejections as [`Error`] (400 for malformed JSON, 422 naming the field for a wrong shape).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with rejections as [`Error`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with rejections as [`Error`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct ApiPath<T>(pub T);

/// Query parameters of the cacheable list endpoints; parsed by hand so each gets a precise message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub q: Option<String>,
    pub limit: Option<String>,
    pub cache: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheParam {
    pub cache: Option<String>,
}

pub const MAX_LIMIT: u32 = 100;
pub const MAX_QUERY_CHARS: usize = 100;

/// Product ids are PostgreSQL `integer`s starting at 1.
pub fn parse_id(raw: &str) -> Result<i32> {
    match raw.parse::<i64>() {
        Ok(id) if (1..=i64::from(i32::MAX)).contains(&id) => Ok(id as i32),
        Ok(_) => Err(Error::bad_request(format!("product id must be between 1 and {}", i32::MAX))),
        Err(_) => Err(Error::bad_request(format!("product id must be a positive integer, got {raw:?}"))),
    }
}

pub fn parse_limit(raw: Option<&str>, default: u32) -> Result<u32> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Error::bad_request(format!("limit must be an integer from 1 to {MAX_LIMIT}, got {raw:?}"))),
    }
}

pub fn parse_query(raw: Option<&str>) -> Result<String> {
    let q = raw.unwrap_or_default();
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::bad_request(format!("q must be at most {MAX_QUERY_CHARS} characters")));
    }
    if q.chars().any(char::is_control) {
        return Err(Error::bad_request("q must not contain control characters"));
    }
    Ok(crate::cache::normalize_term(q))
}

/// `cache=off` bypasses the cache; `cache=on` or no parameter uses it.
pub fn parse_bypass(raw: Option<&str>) -> Result<bool> {
    match raw {
        None | Some("on") => Ok(false),
        Some("off") => Ok(true),
        Some(other) => Err(Error::bad_request(format!("cache must be \"on\" or \"off\", got {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(parse_id("42").ok(), Some(42));
        assert!(parse_id("0").is_err());
        assert!(parse_id("-1").is_err());
        assert!(parse_id("abc").is_err());
        assert!(parse_id("2147483648").is_err());
        assert!(parse_id("99999999999999999999999").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 20).ok(), Some(20));
        assert_eq!(parse_limit(Some("100"), 20).ok(), Some(100));
        assert!(parse_limit(Some("0"), 20).is_err());
        assert!(parse_limit(Some("101"), 20).is_err());
        assert!(parse_limit(Some("ten"), 20).is_err());
    }

    #[test]
    fn queries() {
        assert_eq!(parse_query(Some("  Laptop ")).ok().as_deref(), Some("laptop"));
        assert!(parse_query(Some(&"x".repeat(MAX_QUERY_CHARS + 1))).is_err());
        assert!(parse_query(Some("a\u{0}b")).is_err());
    }

    #[test]
    fn bypass() {
        assert_eq!(parse_bypass(None).ok(), Some(false));
        assert_eq!(parse_bypass(Some("off")).ok(), Some(true));
        assert!(parse_bypass(Some("maybe")).is_err());
    }
}
