//! The HTTP server: hyper's HTTP/1 connection builder with the limits `axum::serve` does not set. Anyone on the
//! network can reach the port, so a connection gets a deadline for its request headers (which also closes an
//! idle keep-alive connection), and the number of open connections is capped: past the cap, new connections
//! wait in the listen backlog instead of costing memory and a task each.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::http::App;

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
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, header timeout, malformed request): nothing to report.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The timer hyper is given for one connection. hyper asks it for a new deadline at the start of every request's
/// headers and drops that deadline once they are read; a timer that made each of them a tokio timer of its own
/// would register one with the runtime and remove it again for every request. Here every deadline of the
/// connection moves the same tokio timer on (a later deadline is one atomic store, see `Sleep::reset`), and a
/// deadline that passes while a request is being answered only wakes the connection, which then finds nothing
/// to read.
#[derive(Clone, Default)]
struct ConnectionTimer(Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>);

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// tokio's clock, which its timers follow.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline { at: deadline.into(), timer: self.0.clone() })
    }
}

/// One deadline of a [`ConnectionTimer`]: elapsed once the connection's timer, set to it, has fired.
struct Deadline {
    at: tokio::time::Instant,
    timer: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut timer = self.timer.lock().unwrap_or_else(PoisonError::into_inner);
        let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(self.at)));
        if sleep.deadline() != self.at {
            sleep.as_mut().reset(self.at);
        }
        sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use hyper::rt::Timer;

    use super::*;

    /// Polls `deadline` once, as hyper does while it waits for a request's headers.
    fn elapsed(deadline: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        deadline.as_mut().poll(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn each_deadline_of_a_connection_moves_its_one_timer() {
        let timer = ConnectionTimer::default();
        let registered = |t: &ConnectionTimer| t.0.lock().expect("lock").as_ref().map(|s| &**s as *const _);
        assert_eq!(registered(&timer), None, "nothing is registered before a deadline is waited for");
        let mut first = timer.sleep(Duration::from_secs(10));
        assert!(!elapsed(&mut first));
        let one = registered(&timer).expect("registered");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!elapsed(&mut first));
        drop(first);
        // The next request's headers: a new deadline, 10 s from now, on the same timer.
        let mut second = timer.sleep(Duration::from_secs(10));
        assert!(!elapsed(&mut second));
        assert_eq!(registered(&timer), Some(one), "the same tokio timer, moved on");
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(!elapsed(&mut second), "the first deadline (10 s after it was set) has passed, the second has not");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(elapsed(&mut second));
        // After a deadline fired, the next one starts over.
        let mut third = timer.sleep_until(timer.now() + Duration::from_secs(1));
        assert!(!elapsed(&mut third));
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(elapsed(&mut third));
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
