//! cache-demo-ref: the yardsticks of `make bench`. Each is the least a server on this stack (tokio, axum, the
//! same allocator and Redis client as the app) can do for one kind of request, so the app's figures can be
//! read as a share of what the machine allows in the same run:
//!
//! - `static`: `GET /healthz` answers the app's health body from a constant;
//! - `redis`: `GET /api/products/{id}` answers the bytes the app stored for that product, read with one
//!   `GET <prefix>:product:<id>` on one multiplexed connection, as they are;
//! - `lookup`: the same answer from the app's own lookup (one `MGET` of the entry and the scope's generation
//!   token), built by the app's code: the least a server can do that keeps the generation check, so
//!   what that check costs is measured rather than assumed.
//!
//! Nothing else: no metrics, no timing headers, no time limits per request, and but for `lookup` no
//! generation check. What the app does beyond this is what it costs.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_demo::ProductLookup;
use clap::{Parser, Subcommand};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The body of the app's `/healthz`.
pub const HEALTH_BODY: &str = r#"{"status":"ok"}"#;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cache-demo-ref",
    version,
    about = "Reference servers for cache-demo-bench: the least a handler can do"
)]
pub struct RefArgs {
    /// Where to listen.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,

    #[command(subcommand)]
    pub kind: Kind,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Kind {
    /// `GET /healthz`: a constant body.
    Static,
    /// `GET /api/products/{id}`: one Redis `GET` of the app's entry for the product (and `/healthz`).
    Redis {
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", hide_env_values = true)]
        redis_url: String,
        /// The app's `CACHE_PREFIX`: the entry read is `<prefix>:product:<id>`.
        #[arg(long, default_value = "cache-demo")]
        key_prefix: String,
    },
    /// `GET /api/products/{id}`: the app's lookup of the product, a hit answered with its value (and
    /// `/healthz`).
    Lookup {
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", hide_env_values = true)]
        redis_url: String,
        /// The app's `CACHE_PREFIX`.
        #[arg(long, default_value = "cache-demo")]
        key_prefix: String,
    },
}

/// The Redis key the app stores product `id` under, with the app's prefix.
pub fn product_key(prefix: &str, id: u32) -> String {
    format!("{prefix}:product:{id}")
}

#[derive(Clone)]
struct FromRedis {
    conn: ConnectionManager,
    prefix: std::sync::Arc<str>,
}

#[derive(Clone)]
struct ByLookup {
    conn: ConnectionManager,
    lookup: std::sync::Arc<ProductLookup>,
}

async fn health() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], HEALTH_BODY).into_response()
}

async fn product(State(s): State<FromRedis>, Path(id): Path<u32>) -> Response {
    let mut conn = s.conn.clone();
    match conn.get::<_, Option<Vec<u8>>>(product_key(&s.prefix, id)).await {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// A hit answers the value; a miss (the token) is not the reference's to load: 404.
async fn product_by_lookup(State(s): State<ByLookup>, Path(id): Path<i32>) -> Response {
    let mut conn = s.conn.clone();
    match s.lookup.send(&mut conn, id).await {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn connect(redis_url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(redis_url).context("REDIS_URL")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    ConnectionManager::new_with_config(client, config).await.context("connecting to Redis")
}

/// The router of one reference server.
pub async fn router(kind: &Kind) -> anyhow::Result<Router> {
    let router = Router::new().route("/healthz", get(health));
    match kind {
        Kind::Static => Ok(router),
        Kind::Redis { redis_url, key_prefix } => {
            let state = FromRedis { conn: connect(redis_url).await?, prefix: key_prefix.as_str().into() };
            Ok(router.route("/api/products/{id}", get(product).with_state(state)))
        }
        Kind::Lookup { redis_url, key_prefix } => {
            let lookup = ProductLookup::new(key_prefix).into();
            let state = ByLookup { conn: connect(redis_url).await?, lookup };
            Ok(router.route("/api/products/{id}", get(product_by_lookup).with_state(state)))
        }
    }
}

/// Serves until the process is stopped.
pub async fn serve(args: &RefArgs) -> anyhow::Result<()> {
    let app = router(&args.kind).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    axum::serve(listener, app).await.context("serving")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_apps_product_key() {
        assert_eq!(product_key("cache-demo", 42), "cache-demo:product:42");
        assert_eq!(product_key("bench7-1", 1), "bench7-1:product:1");
    }

    #[test]
    fn subcommands_parse() {
        let a = RefArgs::parse_from(["cache-demo-ref", "--listen", "127.0.0.1:9", "static"]);
        assert!(matches!(a.kind, Kind::Static));
        let a = RefArgs::parse_from(["cache-demo-ref", "redis", "--redis-url", "redis://h:1", "--key-prefix", "p"]);
        assert!(matches!(a.kind, Kind::Redis { ref key_prefix, .. } if key_prefix == "p"));
        let a = RefArgs::parse_from(["cache-demo-ref", "lookup", "--key-prefix", "p"]);
        assert!(matches!(a.kind, Kind::Lookup { ref key_prefix, .. } if key_prefix == "p"));
        // REDIS_URL may hold a password: `--help` names the variable, never its value.
        let command = <RefArgs as clap::CommandFactory>::command();
        for kind in ["redis", "lookup"] {
            let sub = command.find_subcommand(kind).expect("subcommand");
            let url = sub.get_arguments().find(|a| a.get_id() == "redis_url").expect("--redis-url");
            assert!(url.is_hide_env_values_set(), "{kind}");
        }
    }
}
