//! The HTTP API: one set of routes per resource, merged here, behind the service that times and records every
//! request (`record`).
//!
//! `products` (`/api/products`, `/api/products/{id}`), `catalog` (categories, top products), `cache` (stats,
//! flush, warm, `/admin/cache/keys`), `dashboard` (the page and its API), `labs` (the dashboard's experiments),
//! `ops` (probes, metrics).

mod cache;
mod catalog;
mod dashboard;
mod extract;
mod labs;
mod ops;
mod products;
mod record;
mod respond;

use axum::Router;
use axum::routing::MethodRouter;

pub use self::record::App;
use crate::error::Error;
use crate::state::AppState;

/// The whole API, behind the service that bounds, times and records every request.
pub fn app(state: AppState) -> App {
    let routes = all_routes();
    let router = routes
        .router
        .fallback(|| async { Error::NotFound("route".into()) })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .with_state(state.clone());
    App::new(router, &routes.paths, &routes.direct, state)
}

fn all_routes() -> Routes {
    Routes::new()
        .merge(products::routes())
        .merge(catalog::routes())
        .merge(cache::routes())
        .merge(dashboard::routes())
        .merge(labs::routes())
        .merge(ops::routes())
}

/// A router that keeps the path pattern of each route it is given: the patterns name a request's route in the
/// metrics ([`App`]), so they are written once, here with their handlers.
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
    /// Routes whose plain `GET` (no query string) [`App`] may answer without the router: see [`DirectGet`].
    direct: Vec<(&'static str, DirectGet)>,
}

/// The answer to a plain `GET` of a route, for [`App`] to call without the router, or `None` when the router
/// should answer (it then gives the same answer, or the error). It must do what the route's `GET` handler does
/// for such a request: it is a shortcut past the router's work (matching again, path parameters in a map,
/// extractors), not another handler. It is given the moment [`App`] took the request, which its records time
/// from too.
pub type DirectGet = fn(&AppState, &matchit::Params<'_, '_>, std::time::Instant) -> Option<DirectFuture>;

/// The response of a [`DirectGet`].
pub type DirectFuture = std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send>>;

impl Routes {
    fn new() -> Self {
        Routes { router: Router::new(), paths: Vec::new(), direct: Vec::new() }
    }

    /// `path`'s plain `GET`s may be answered by `answer` without the router; `path` is a route of its own too.
    fn direct_get(mut self, path: &'static str, answer: DirectGet) -> Self {
        assert!(self.paths.contains(&path), "{path}: give the route before its direct answer");
        self.direct.push((path, answer));
        self
    }

    fn route(mut self, path: &'static str, methods: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, methods);
        self.keep(path);
        self
    }

    fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        for path in other.paths {
            self.keep(path);
        }
        self.direct.extend(other.direct);
        self
    }

    /// A pattern given twice is one route to axum (it merges the methods) and one label here.
    fn keep(&mut self, path: &'static str) {
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
    }
}
