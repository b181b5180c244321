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
    App::new(router, &routes.paths, state)
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
}

impl Routes {
    fn new() -> Self {
        Routes { router: Router::new(), paths: Vec::new() }
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
        self
    }

    /// A pattern given twice is one route to axum (it merges the methods) and one label here.
    fn keep(&mut self, path: &'static str) {
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
    }
}
