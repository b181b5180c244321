//! The HTTP server: hyper's HTTP/1 connection builder with the limits `axum::serve` does not set. Anyone on the
//! network can reach the port, so a connection gets a deadline for its request headers (which also closes an
//! idle keep-alive connection), and the number of open connections is capped: past the cap, new connections
//! wait in the listen backlog instead of costing memory and a task each.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::http::App;
use crate::timer::{Deadline, TimerSlot};

/// The server's own protection, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's first byte (or the end of its previous response) to the end of the request
    /// headers. A client that sends headers slowly, or not at all, is disconnected when it passes.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Accepts until `shutdown` completes, then stops accepting and waits for open connections to finish their
/// requests (the caller bounds that wait).
pub async fn run(
    listener: TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(limits.header_read_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        http.timer(ConnectionTimer::default());
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.for_connection()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, header timeout, malformed request): nothing to report. The
            // database connections of its reads go back to the pool once a response is written, not before.
            let _ = crate::db::return_connections_when_yielding(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The timer hyper is given for one connection. hyper asks it for a new deadline at the start of every request's
/// headers and drops that deadline once they are read; each is a [`Deadline`] of the connection's one timer for
/// them (see [`crate::timer`]), rather than a tokio timer of its own filed and removed again for every request. A
/// deadline that passes while a request is being answered only wakes the connection, which then finds nothing
/// to read.
#[derive(Clone, Default)]
struct ConnectionTimer(TimerSlot);

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// tokio's clock, which its timers follow.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.0.deadline(deadline.into()))
    }
}

impl hyper::rt::Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use std::task::Context;

    use hyper::rt::Timer;

    use super::*;

    /// Polls `deadline` once, as hyper does while it waits for a request's headers.
    fn elapsed(deadline: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        deadline.as_mut().poll(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_deadlines_of_a_connection_share_its_one_timer() {
        let timer = ConnectionTimer::default();
        let mut first = timer.sleep(Duration::from_secs(10));
        assert!(!elapsed(&mut first));
        drop(first);
        let one = timer.0.held().expect("given back");
        // The next request's headers: a new deadline, 10 s from now, on the same timer.
        tokio::time::advance(Duration::from_secs(4)).await;
        let mut second = timer.sleep(Duration::from_secs(10));
        assert!(!elapsed(&mut second));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(!elapsed(&mut second), "the first deadline (10 s after it was set) has passed, the second has not");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(elapsed(&mut second));
        drop(second);
        assert_eq!(timer.0.held(), Some(one), "the same tokio timer, moved on");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_have_timers_of_their_own() {
        let (a, b) = (ConnectionTimer::default(), ConnectionTimer::default());
        let mut soon = a.sleep(Duration::from_secs(1));
        let mut later = b.sleep(Duration::from_secs(5));
        assert!(!elapsed(&mut soon) && !elapsed(&mut later));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(elapsed(&mut soon));
        assert!(!elapsed(&mut later));
    }
}
