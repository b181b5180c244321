//! [`App`]: the router behind one service that bounds every request by [`REQUEST_TIMEOUT`] (past it:
//! [`Error::Timeout`]) and records `http_request_duration_seconds{route, method, status, source}` and the
//! recent-requests list.
//!
//! It wraps the finished router instead of being given to it as a layer: axum wraps every route in a layer of
//! its own, which costs each request boxed futures and clones of boxed services, and `middleware::from_fn`
//! boxes one more future and clones the rest of the stack. Here a request costs a few reference counts, and
//! the route label comes from the same patterns the router was built with ([`Routes`](super::Routes)).
//!
//! The match that names the route also finds its [`DirectGet`], if it has one: a plain `GET` of such a route
//! (one product by id, the cache's hot path) is answered without the router, which would match the path again,
//! put its parameters in a map in the request's extensions and run the extractors: about 5,000 of a cache
//! hit's 42,500 instructions. Everything else here (the time limit, the records) is the same for both.

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

use super::{DirectFuture, DirectGet};
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
    pub(super) fn new(
        router: Router,
        paths: &[&'static str],
        direct: &[(&'static str, DirectGet)],
        state: AppState,
    ) -> Self {
        App { router, labels: Arc::new(RouteLabels::new(paths, direct)), state }
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
        let matched = self.labels.0.at(path).ok();
        let route = matched.as_ref().map_or(UNMATCHED, |m| m.value.label);
        let listed = Recent::wants(request.method(), path).then(|| request.uri().clone());
        let method = method_label(request.method());
        let direct = matched
            .filter(|_| plain_get(request.method(), request.uri()))
            .and_then(|m| m.value.direct.and_then(|answer| answer(&self.state, &m.params)));
        let dispatch = match direct {
            Some(future) => Dispatch::Direct { future },
            None => Dispatch::Routed { future: self.router.call(request) },
        };
        Recording {
            inner: tokio::time::timeout(REQUEST_TIMEOUT, dispatch),
            started,
            route,
            method,
            listed,
            state: self.state.clone(),
        }
    }
}

pin_project! {
    /// A request on its way to its response: through the router, or past it (see [`DirectGet`]).
    #[project = DispatchProjection]
    pub enum Dispatch {
        Routed { #[pin] future: RouteFuture<Infallible> },
        Direct { future: DirectFuture },
    }
}

impl Future for Dispatch {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchProjection::Routed { future } => future.poll(cx),
            DispatchProjection::Direct { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

pin_project! {
    /// A request on its way to its response; records it when the response is ready.
    pub struct Recording {
        #[pin]
        inner: Timeout<Dispatch>,
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
/// axum itself uses, or `unmatched`, so made-up paths cannot add series; and the route's [`DirectGet`], if any.
struct RouteLabels(matchit::Router<Route>);

#[derive(Clone, Copy)]
struct Route {
    label: &'static str,
    direct: Option<DirectGet>,
}

impl RouteLabels {
    fn new(paths: &[&'static str], direct: &[(&'static str, DirectGet)]) -> Self {
        let mut labels = matchit::Router::new();
        for path in paths {
            let direct = direct.iter().find(|(p, _)| p == path).map(|(_, answer)| *answer);
            // axum has already accepted each pattern into the same kind of router, or panicked at start-up.
            labels.insert(*path, Route { label: path, direct }).unwrap_or_else(|e| panic!("route {path}: {e}"));
        }
        RouteLabels(labels)
    }

    #[cfg(test)]
    fn label(&self, path: &str) -> &'static str {
        self.0.at(path).map_or(UNMATCHED, |m| m.value.label)
    }
}

/// Whether a request may take its route's [`DirectGet`]: a `GET` without a query string (`HEAD`, the other
/// methods and any query go through the router).
fn plain_get(method: &Method, uri: &Uri) -> bool {
    method == Method::GET && uri.query().is_none()
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
        let labels = RouteLabels::new(&routes.paths, &routes.direct);
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
    fn only_plain_gets_of_one_product_go_past_the_router() {
        let routes = super::super::all_routes();
        let labels = RouteLabels::new(&routes.paths, &routes.direct);
        let direct = |path: &str| labels.0.at(path).is_ok_and(|m| m.value.direct.is_some());
        assert!(direct("/api/products/7"));
        for path in ["/api/products", "/api/categories", "/healthz", "/api/top-products", "/api/products/7/x"] {
            assert!(!direct(path), "{path}");
        }
        let uri = |s: &str| s.parse::<Uri>().expect("uri");
        assert!(plain_get(&Method::GET, &uri("/api/products/7")));
        assert!(!plain_get(&Method::GET, &uri("/api/products/7?cache=on")));
        assert!(!plain_get(&Method::GET, &uri("/api/products/7?")), "an empty query is still a query");
        assert!(!plain_get(&Method::HEAD, &uri("/api/products/7")));
        assert!(!plain_get(&Method::PUT, &uri("/api/products/7")));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PUT), "PUT");
        assert_eq!(method_label(&Method::TRACE), "other");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("method")), "other");
    }
}
