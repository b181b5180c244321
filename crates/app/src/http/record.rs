//! [`App`]: the router behind one service that bounds every request by [`REQUEST_TIMEOUT`] (past it:
//! [`Error::Timeout`]) and records `http_request_duration_seconds{route, method, status, source}` and the
//! recent-requests list.
//!
//! It wraps the finished router instead of being given to it as a layer: axum wraps every route in a layer of
//! its own, which costs each request boxed futures and clones of boxed services, and `middleware::from_fn`
//! boxes one more future and clones the rest of the stack. Here a request costs a few reference counts, and
//! the route label comes from the same patterns the router was built with ([`Routes`](super::Routes)).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::{BoxError, Router};
use pin_project_lite::pin_project;
use tokio::time::Timeout;
use tower_service::Service;

use crate::error::Error;
use crate::recent::Recent;
use crate::state::AppState;

/// Upper bound of any request; the database and Redis have tighter bounds of their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The route label of a request that matches no route.
const UNMATCHED: &str = "unmatched";

/// The app as a service for hyper, cheap to clone (one per connection and per request).
#[derive(Clone)]
pub struct App {
    router: Router,
    labels: Arc<RouteLabels>,
    state: AppState,
}

impl App {
    pub(super) fn new(router: Router, paths: &[&'static str], state: AppState) -> Self {
        App { router, labels: Arc::new(RouteLabels::new(paths)), state }
    }
}

impl<B> Service<Request<B>> for App
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Recording;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Recording {
        let started = Instant::now();
        let path = request.uri().path();
        let route = self.labels.label(path);
        let listed = Recent::wants(request.method(), path).then(|| request.uri().clone());
        let method = method_label(request.method());
        Recording {
            inner: tokio::time::timeout(REQUEST_TIMEOUT, self.router.call(request)),
            started,
            route,
            method,
            listed,
            state: self.state.clone(),
        }
    }
}

pin_project! {
    /// A request on its way through the router; records it when the response is ready.
    pub struct Recording {
        #[pin]
        inner: Timeout<RouteFuture<Infallible>>,
        started: Instant,
        route: &'static str,
        method: &'static str,
        listed: Option<Uri>,
        state: AppState,
    }
}

impl Future for Recording {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.inner.poll(cx)) {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => Error::Timeout.into_response(),
        };
        let outcome = super::respond::reported(&response);
        let elapsed = this.started.elapsed();
        this.state
            .metrics
            .http_duration
            .with_label_values(&[
                *this.route,
                *this.method,
                response.status().as_str(),
                outcome.map_or("none", |o| o.source),
            ])
            .observe(elapsed.as_secs_f64());
        if let Some(uri) = this.listed.take() {
            let ms = elapsed.as_secs_f64() * 1000.0;
            this.state.recent.push(this.method, uri, response.status().as_u16(), outcome.map(|o| o.header), ms);
        }
        Poll::Ready(Ok(response))
    }
}

/// The `route` label: the pattern of the route a path matches (`/api/products/{id}`), matched by the router
/// axum itself uses, or `unmatched`, so made-up paths cannot add series.
struct RouteLabels(matchit::Router<&'static str>);

impl RouteLabels {
    fn new(paths: &[&'static str]) -> Self {
        let mut labels = matchit::Router::new();
        for path in paths {
            // axum has already accepted each pattern into the same kind of router, or panicked at start-up.
            labels.insert(*path, *path).unwrap_or_else(|e| panic!("route {path}: {e}"));
        }
        RouteLabels(labels)
    }

    fn label(&self, path: &str) -> &'static str {
        self.0.at(path).map_or(UNMATCHED, |m| *m.value)
    }
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
    fn routes_are_labelled_by_their_patterns() {
        let routes = super::super::all_routes();
        let labels = RouteLabels::new(&routes.paths);
        assert_eq!(labels.label("/api/products/7"), "/api/products/{id}");
        assert_eq!(labels.label("/api/products"), "/api/products");
        assert_eq!(labels.label("/healthz"), "/healthz");
        assert_eq!(labels.label("/api/products/7/extra"), UNMATCHED);
        assert_eq!(labels.label("/wp-login.php"), UNMATCHED);
        // Every route the router was built with has a label (a parameter matches its own `{name}` literally).
        for path in &routes.paths {
            assert_eq!(labels.label(path), *path);
        }
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PUT), "PUT");
        assert_eq!(method_label(&Method::TRACE), "other");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("method")), "other");
    }
}
