//! The HTTP API: one router per resource, merged here, with the request-metrics middleware.
//!
//! `products` (`/api/products`, `/api/products/{id}`), `catalog` (categories, top products), `cache` (stats,
//! flush, warm, `/admin/cache/keys`), `dashboard` (the page and its API), `ops` (probes, metrics).

mod cache;
mod catalog;
mod dashboard;
mod extract;
mod ops;
mod products;
mod respond;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::cache::Outcome;
use crate::error::Error;
use crate::state::AppState;

/// Upper bound of any request; the database and Redis have tighter bounds of their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(products::router())
        .merge(catalog::router())
        .merge(cache::router())
        .merge(dashboard::router())
        .merge(ops::router())
        .fallback(|| async { Error::NotFound("route".into()) })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// Bounds every request by [`REQUEST_TIMEOUT`] (past it: [`Error::Timeout`]), and records
/// `http_request_duration_seconds{route, method, status, source}` and the recent-requests list. The time limit
/// lives here rather than in a layer of its own: an axum error-handling layer boxes every request's future
/// and clones the inner service, allocations that the hit path would pay on every request.
async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let listed = crate::recent::Recent::wants(request.uri().path()).then(|| request.uri().clone());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = tokio::time::timeout(REQUEST_TIMEOUT, next.run(request))
        .await
        .unwrap_or_else(|_| Error::Timeout.into_response());
    let outcome = response.extensions().get::<Outcome>().copied();
    let source = outcome.map_or("none", |o| o.source());
    let elapsed = started.elapsed();
    state
        .metrics
        .http_duration
        .with_label_values(&[
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            method,
            response.status().as_str(),
            source,
        ])
        .observe(elapsed.as_secs_f64());
    if let Some(uri) = listed {
        let ms = elapsed.as_secs_f64() * 1000.0;
        state.recent.push(method, uri, response.status().as_u16(), outcome.map(Outcome::header), ms);
    }
    response
}

/// The `method` label: one of the methods the app answers, else `other`, so made-up methods cannot add series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PUT), "PUT");
        assert_eq!(method_label(&Method::TRACE), "other");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("method")), "other");
    }
}
