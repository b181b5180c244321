//! The HTTP client: one HTTP/1.1 keep-alive connection per worker, on hyper's low-level connection API.
//!
//! Why not a pooled client: the load generator shares the machine's cores with the app, PostgreSQL and Redis,
//! so every microsecond it spends per request is taken from the server it measures. A bare
//! `hyper::client::conn::http1` connection has no pool, no DNS and no redirect logic on the request path,
//! and each worker owns its connection, so nothing is shared or locked per request.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL {0:?}: use http://HOST:PORT (https is not supported; port-forward instead)")]
    BadUrl(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where the app is: the socket address, the `Host` header and an optional path prefix from the URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    host: HeaderValue,
    prefix: String,
}

impl Target {
    /// Parses `http://host[:port][/prefix]` and resolves the host once.
    pub async fn resolve(url: &str) -> Result<Target, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?;
        let port = uri.port_u16().unwrap_or(80);
        let lookup = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((lookup, port))
            .await
            .map_err(|_| ClientError::Resolve(host.to_owned()))?
            .next()
            .ok_or_else(|| ClientError::Resolve(host.to_owned()))?;
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
        let host = HeaderValue::from_str(authority).map_err(|_| bad())?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Target { url: url.trim_end_matches('/').to_owned(), addr, host, prefix })
    }

    /// A target at a known address (the app started by the bench or a test).
    pub fn local(addr: SocketAddr) -> Target {
        let url = format!("http://{addr}");
        let host = HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("localhost"));
        Target { url, addr, host, prefix: String::new() }
    }

    /// `path` under the URL's prefix.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// One request on a connection of its own (control calls: stats, metrics, flush; never the load).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let mut conn = Conn::connect(self, timeout).await?;
        conn.send(method, path, body, timeout).await
    }

    /// Like [`Target::request`] without a body, with an `Authorization` header.
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let mut conn = Conn::connect(self, timeout).await?;
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host.clone());
        if let Some(a) = authorization {
            builder = builder.header(AUTHORIZATION, a);
        }
        conn.exchange(builder.body(Full::new(Bytes::new()))?, timeout).await
    }
}

/// The parts of a response the bench looks at.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
    host: HeaderValue,
}

impl Conn {
    pub async fn connect(target: &Target, timeout: Duration) -> Result<Conn, ClientError> {
        let addr = target.addr;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|source| ClientError::Connect { addr, source })?;
        // Requests are small and answered one at a time: never wait for Nagle.
        stream.set_nodelay(true).map_err(|source| ClientError::Connect { addr, source })?;
        let (sender, connection) =
            tokio::time::timeout(timeout, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
                .await
                .map_err(|_| ClientError::Timeout(timeout))??;
        // The connection's I/O runs in its own task; it ends when the sender is dropped or the peer closes.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender, driver, host: target.host.clone() })
    }

    /// False once the peer closed the connection or it failed: connect again.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole body (so the connection can be reused), bounded by `timeout`.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host.clone());
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        self.exchange(builder.body(Full::new(body.unwrap_or_default()))?, timeout).await
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>, timeout: Duration) -> Result<Reply, ClientError> {
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, ClientError>(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout(timeout))?
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_parsed_with_port_and_prefix() {
        let t = Target::resolve("http://127.0.0.1:8123/demo/").await.expect("valid");
        assert_eq!(t.addr, "127.0.0.1:8123".parse().expect("addr"));
        assert_eq!(t.path("/healthz"), "/demo/healthz");
        assert_eq!(t.host, "127.0.0.1:8123");
        let t = Target::resolve("http://127.0.0.1").await.expect("valid");
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path("/healthz"), "/healthz");
    }

    #[tokio::test]
    async fn https_and_garbage_are_rejected() {
        assert!(matches!(Target::resolve("https://127.0.0.1:8000").await, Err(ClientError::BadUrl(_))));
        assert!(matches!(Target::resolve("127.0.0.1:8000").await, Err(ClientError::BadUrl(_))));
        assert!(matches!(Target::resolve("not a url").await, Err(ClientError::BadUrl(_))));
    }
}
