//! Extractors whose rejections are our JSON errors, and [`Admin`], the authorisation of the admin routes.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use crate::cache::Via;
use crate::catalog::{CacheParam, parse_via};
use crate::error::Error;
use crate::state::AppState;

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

/// `?cache=on|off` of a read that takes no other parameter, as a [`Via`]. Without a query string it is
/// [`Via::Cache`] at once: most reads have none, and the query parser costs a cache hit about 1% of its time.
pub struct CacheVia(pub Via);

impl<S: Send + Sync> FromRequestParts<S> for CacheVia {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if parts.uri.query().is_none() {
            return Ok(CacheVia(Via::Cache));
        }
        let ApiQuery(p) = ApiQuery::<CacheParam>::from_request_parts(parts, state).await?;
        parse_via(p.cache.as_deref()).map(CacheVia)
    }
}

/// A request allowed to change something (product writes, the flush, warming, the admin routes): it carries
/// `Authorization: Bearer <ADMIN_TOKEN>` (the scheme in any case), or no token is configured. Listed after a
/// handler's other extractors except a body, so a malformed query is still a 400 but a body is read only once
/// the caller is known.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let Some(expected) = state.config.admin_token() else {
            return Ok(Admin);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or_default();
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) { Ok(Admin) } else { Err(Error::Unauthorized) }
    }
}

/// The credentials of `Bearer <token>`; the scheme is case-insensitive (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

/// Compares without stopping at the first difference, so timing does not reveal how much of a guess is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
