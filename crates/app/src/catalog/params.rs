//! Parameters of the cacheable reads, parsed the same way for the public endpoints and the dashboard's
//! `endpoint=` form: ids, limits, search terms and `cache=`.

use serde::Deserialize;

use super::Target;
use crate::cache::{Endpoint, Via, normalize_term};
use crate::error::{Error, Result};

pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub const DEFAULT_TOP_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;
pub const MAX_QUERY_CHARS: usize = 100;

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

/// `endpoint=categories|search|top|product` plus its parameters, as the dashboard sends them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetParams {
    pub endpoint: Option<String>,
    pub q: Option<String>,
    pub limit: Option<String>,
    pub id: Option<String>,
}

/// The dashboard's name of an endpoint (`endpoint=`).
fn dashboard_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Categories => "categories",
        Endpoint::Search => "search",
        Endpoint::TopProducts => "top",
        Endpoint::Product => "product",
    }
}

impl Target {
    /// `GET /api/products?q=&limit=`.
    pub fn search(q: Option<&str>, limit: Option<&str>) -> Result<Target> {
        Ok(Target::Search { q: parse_query(q)?, limit: parse_limit(limit, DEFAULT_SEARCH_LIMIT)? })
    }

    /// `GET /api/top-products?limit=`.
    pub fn top(limit: Option<&str>) -> Result<Target> {
        Ok(Target::Top { limit: parse_limit(limit, DEFAULT_TOP_LIMIT)? })
    }

    /// `GET /api/products/{id}`.
    pub fn product(id: &str) -> Result<Target> {
        Ok(Target::Product { id: parse_id(id)? })
    }

    /// The dashboard's form of a target.
    pub fn from_params(p: &TargetParams) -> Result<Target> {
        let name = p.endpoint.as_deref().unwrap_or_default();
        let Some(endpoint) = Endpoint::ALL.into_iter().find(|e| dashboard_name(*e) == name) else {
            let names: Vec<&str> = Endpoint::ALL.into_iter().map(dashboard_name).collect();
            return Err(Error::bad_request(format!("endpoint must be one of {}; got {name:?}", names.join(", "))));
        };
        let (target, unused) = match endpoint {
            Endpoint::Categories => (Target::Categories, p.q.is_some() || p.limit.is_some() || p.id.is_some()),
            Endpoint::Search => (Target::search(p.q.as_deref(), p.limit.as_deref())?, p.id.is_some()),
            Endpoint::TopProducts => (Target::top(p.limit.as_deref())?, p.q.is_some() || p.id.is_some()),
            Endpoint::Product => {
                let id = p.id.as_deref().ok_or_else(|| Error::bad_request("endpoint=product needs an id"))?;
                (Target::product(id)?, p.q.is_some() || p.limit.is_some())
            }
        };
        if unused {
            return Err(Error::bad_request(format!("parameters given that endpoint={name} does not take")));
        }
        Ok(target)
    }
}

/// Product ids are PostgreSQL `integer`s starting at 1.
pub fn parse_id(raw: &str) -> Result<i32> {
    match raw.parse::<i64>() {
        Ok(id) if (1..=i64::from(i32::MAX)).contains(&id) => Ok(id as i32),
        Ok(_) => Err(Error::bad_request(format!("product id must be between 1 and {}", i32::MAX))),
        Err(_) => Err(Error::bad_request(format!("product id must be a positive integer, got {raw:?}"))),
    }
}

fn parse_limit(raw: Option<&str>, default: u32) -> Result<u32> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Error::bad_request(format!("limit must be an integer from 1 to {MAX_LIMIT}, got {raw:?}"))),
    }
}

fn parse_query(raw: Option<&str>) -> Result<String> {
    let q = raw.unwrap_or_default();
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::bad_request(format!("q must be at most {MAX_QUERY_CHARS} characters")));
    }
    if q.chars().any(char::is_control) {
        return Err(Error::bad_request("q must not contain control characters"));
    }
    Ok(normalize_term(q))
}

/// `cache=off` bypasses the cache; `cache=on` or no parameter uses it.
pub fn parse_via(raw: Option<&str>) -> Result<Via> {
    match raw {
        None | Some("on") => Ok(Via::Cache),
        Some("off") => Ok(Via::DatabaseOnly),
        Some(other) => Err(Error::bad_request(format!("cache must be \"on\" or \"off\", got {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheKey;

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

    #[test]
    fn unknown_endpoints_are_named_in_the_message() {
        let e = Target::from_params(&params("users", None, None, None)).expect_err("unknown");
        assert_eq!(e.to_string(), "endpoint must be one of categories, search, top, product; got \"users\"");
    }

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
    fn cache_off_reads_the_database_only() {
        assert_eq!(parse_via(None).ok(), Some(Via::Cache));
        assert_eq!(parse_via(Some("off")).ok(), Some(Via::DatabaseOnly));
        assert!(parse_via(Some("maybe")).is_err());
    }
}
