//! [`App`]: the router behind one service that bounds every request by [`REQUEST_TIMEOUT`] (past it:
//! [`Error::Timeout`], timed by the connection's one timer for it: see [`crate::timer`]) and records
//! `http_request_duration_seconds{route, method, status, source}` and the recent-requests list.
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
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::{BoxError, Router};
use pin_project_lite::pin_project;
use prometheus::Histogram;
use tower_service::Service;

use super::{DirectFuture, DirectGet};
use crate::error::Error;
use crate::recent::Recent;
use crate::state::AppState;
use crate::timer::{Deadline, TimerSlot};

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
    /// The timer of the requests' time limits, shared by the clones of one connection's service.
    limit: TimerSlot,
}

impl App {
    pub(super) fn new(
        router: Router,
        paths: &[&'static str],
        direct: &[(&'static str, DirectGet)],
        state: AppState,
    ) -> Self {
        App { router, labels: Arc::new(RouteLabels::new(paths, direct)), state, limit: TimerSlot::default() }
    }

    /// The service for one connection: its requests, which come one after another, share a timer for their
    /// time limits (each later than the one before).
    pub fn for_connection(&self) -> App {
        App { limit: TimerSlot::default(), ..self.clone() }
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
        // tokio's clock, which the time limit's timer follows: `Instant::now()`, except in tests that pause it.
        let started = tokio::time::Instant::now().into_std();
        let path = request.uri().path();
        let matched = self.labels.router.at(path).ok();
        let route = matched.as_ref().map_or(self.labels.unmatched(), |m| *m.value);
        let listed = Recent::wants(request.method(), path).then(|| request.uri().clone());
        let method = method_label(request.method());
        let direct = matched.filter(|_| plain_get(request.method(), request.uri())).and_then(|m| {
            self.labels.routes[*m.value].direct.and_then(|answer| answer(&self.state, &m.params, started))
        });
        let dispatch = match direct {
            Some(future) => Dispatch::Direct { future },
            None => Dispatch::Routed { future: self.router.call(request) },
        };
        Recording {
            dispatch,
            limit: self.limit.deadline((started + REQUEST_TIMEOUT).into()),
            started,
            labels: self.labels.clone(),
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
        dispatch: Dispatch,
        limit: Deadline,
        started: Instant,
        labels: Arc<RouteLabels>,
        // Index of the route in `labels`.
        route: usize,
        method: &'static str,
        listed: Option<Uri>,
        state: AppState,
    }
}

impl Future for Recording {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.dispatch.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => {
                ready!(Pin::new(this.limit).poll(cx));
                Error::Timeout.into_response()
            }
        };
        let outcome = super::respond::reported(&response);
        let elapsed = this.started.elapsed();
        let source = outcome.map_or("none", |o| o.source);
        let route = &this.labels.routes[*this.route];
        let durations = &this.state.metrics.http_duration;
        let seconds = elapsed.as_secs_f64();
        match route.ok_gets.slot(this.method, response.status(), source) {
            Some(slot) => {
                slot.get_or_init(|| durations.with_label_values(&[route.label, "GET", "200", source])).observe(seconds)
            }
            None => durations
                .with_label_values(&[route.label, *this.method, response.status().as_str(), source])
                .observe(seconds),
        }
        if let Some(uri) = this.listed.take() {
            let ms = elapsed.as_secs_f64() * 1000.0;
            let at = *this.started + elapsed;
            this.state.recent.push(at, this.method, uri, response.status().as_u16(), outcome.map(|o| o.header), ms);
        }
        Poll::Ready(Ok(response))
    }
}

/// The `route` label: the pattern of the route a path matches (`/api/products/{id}`), matched by the router
/// axum itself uses, or `unmatched`, so made-up paths cannot add series; and the route's [`DirectGet`], if any.
struct RouteLabels {
    /// A path's route, as an index into `routes`.
    router: matchit::Router<usize>,
    /// Every route, then `unmatched`.
    routes: Vec<Route>,
}

struct Route {
    label: &'static str,
    direct: Option<DirectGet>,
    ok_gets: OkGets,
}

impl RouteLabels {
    fn new(paths: &[&'static str], direct: &[(&'static str, DirectGet)]) -> Self {
        let mut router = matchit::Router::new();
        let mut routes = Vec::with_capacity(paths.len() + 1);
        for path in paths {
            let direct = direct.iter().find(|(p, _)| p == path).map(|(_, answer)| *answer);
            // axum has already accepted each pattern into the same kind of router, or panicked at start-up.
            router.insert(*path, routes.len()).unwrap_or_else(|e| panic!("route {path}: {e}"));
            routes.push(Route { label: path, direct, ok_gets: OkGets::default() });
        }
        routes.push(Route { label: UNMATCHED, direct: None, ok_gets: OkGets::default() });
        RouteLabels { router, routes }
    }

    fn unmatched(&self) -> usize {
        self.routes.len() - 1
    }

    #[cfg(test)]
    fn route(&self, path: &str) -> &Route {
        &self.routes[self.router.at(path).map_or(self.unmatched(), |m| *m.value)]
    }
}

/// A route's `http_request_duration_seconds` series of a `GET` answered `200`, one per `source`, each looked up
/// by its labels on first use and kept: the lookup hashes four label values, a tenth of what the app itself
/// adds to a cache hit. Looked up on first use, not at start-up, so `/metrics` lists only series that were
/// observed. Any other method or status is looked up per request.
#[derive(Default)]
struct OkGets([OnceLock<Histogram>; 3]);

impl OkGets {
    fn slot(&self, method: &str, status: StatusCode, source: &str) -> Option<&OnceLock<Histogram>> {
        if method != "GET" || status != StatusCode::OK {
            return None;
        }
        let i = match source {
            "cache" => 0,
            "database" => 1,
            "none" => 2,
            _ => return None,
        };
        Some(&self.0[i])
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
        let label = |path: &str| labels.route(path).label;
        assert_eq!(label("/api/products/7"), "/api/products/{id}");
        assert_eq!(label("/api/products"), "/api/products");
        assert_eq!(label("/healthz"), "/healthz");
        assert_eq!(label("/api/products/7/extra"), UNMATCHED);
        assert_eq!(label("/wp-login.php"), UNMATCHED);
        // Every route the router was built with has a label (a parameter matches its own `{name}` literally).
        for path in &routes.paths {
            assert_eq!(label(path), *path);
        }
    }

    #[test]
    fn only_plain_gets_of_one_product_go_past_the_router() {
        let routes = super::super::all_routes();
        let labels = RouteLabels::new(&routes.paths, &routes.direct);
        let direct = |path: &str| labels.route(path).direct.is_some();
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
    fn kept_series_are_the_labelled_ones_and_only_for_gets_answered_200() {
        let vec = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("d", "d"),
            &["route", "method", "status", "source"],
        )
        .expect("vec");
        let gets = OkGets::default();
        assert!(gets.slot("HEAD", StatusCode::OK, "cache").is_none());
        assert!(gets.slot("GET", StatusCode::NOT_FOUND, "none").is_none());
        assert!(gets.slot("GET", StatusCode::OK, "elsewhere").is_none());
        let count = |source: &str| vec.with_label_values(&["/r", "GET", "200", source]).get_sample_count();
        for (source, times) in [("cache", 3), ("database", 2), ("none", 1)] {
            for _ in 0..times {
                let slot = gets.slot("GET", StatusCode::OK, source).expect("kept");
                slot.get_or_init(|| vec.with_label_values(&["/r", "GET", "200", source])).observe(0.001);
            }
        }
        assert_eq!((count("cache"), count("database"), count("none")), (3, 2, 1));
        // Nothing is looked up before it is observed: an unused slot adds no series.
        let fresh = OkGets::default();
        assert!(fresh.0.iter().all(|slot| slot.get().is_none()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_time_limit_is_answered_503_and_the_next_one_has_a_limit_of_its_own() {
        use axum::routing::get;

        let config = crate::Config::for_urls("postgres://nobody@127.0.0.1:1/none", "redis://127.0.0.1:1/");
        let state = AppState::new(config).expect("state");
        let router = Router::new()
            .route("/slow", get(std::future::pending::<&'static str>))
            .route("/fast", get(|| async { "ok" }));
        let app = App::new(router, &["/slow", "/fast"], &[], state).for_connection();
        let request = |path: &str| Request::get(path).body(axum::body::Body::empty()).expect("request");
        let answer = |path: &'static str| {
            let mut app = app.clone();
            async move {
                let start = tokio::time::Instant::now();
                let response = app.call(request(path)).await.expect("infallible");
                (response.status(), start.elapsed())
            }
        };
        let (status, took) = answer("/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + Duration::from_secs(1), "{took:?}");
        let timer = app.limit.held().expect("the timer is kept for the connection's next request");
        assert_eq!(answer("/fast").await.0, StatusCode::OK);
        tokio::time::advance(Duration::from_secs(5)).await;
        let (status, took) = answer("/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + Duration::from_secs(1), "{took:?}");
        assert_eq!(app.limit.held(), Some(timer), "the same timer, moved on");
        // Another connection's service has a timer of its own.
        assert_eq!(app.for_connection().limit.held(), None);
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PUT), "PUT");
        assert_eq!(method_label(&Method::TRACE), "other");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("method")), "other");
    }
}
