//! Single-flight: concurrent misses of one key in this process share one database load.
//!
//! A flight is tied to the generation token its leader read. A request joins only a flight with the token it
//! read itself, so a load that started before a write (old token) never answers a request that started after
//! it (new token), in this replica or any other.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

/// What a finished flight hands to its followers.
#[derive(Debug, Clone)]
pub enum Shared {
    Value(Bytes),
    NotFound(String),
    /// The leader failed or was cancelled: followers load for themselves.
    Failed,
}

/// A finished flight keeps answering late joiners briefly (their lookup missed just before the leader's
/// fill landed), which is safe because joining requires the same generation token.
const LINGER: Duration = Duration::from_millis(200);

struct Entry {
    token: Option<String>,
    rx: watch::Receiver<Option<Shared>>,
    finished: Option<Instant>,
}

#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<String, Entry>>,
}

pub enum Join<'a> {
    Leader(Lead<'a>),
    Follower(watch::Receiver<Option<Shared>>),
}

impl Flights {
    pub fn join(&self, key: &str, token: Option<&str>) -> Join<'_> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(key) {
            let fresh = e.finished.is_none_or(|t| t.elapsed() < LINGER);
            let failed = matches!(*e.rx.borrow(), Some(Shared::Failed));
            if fresh && !failed && e.token.as_deref() == token {
                return Join::Follower(e.rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), Entry { token: token.map(str::to_owned), rx, finished: None });
        Join::Leader(Lead { flights: self, key: key.to_owned(), tx, done: false })
    }

    /// Number of entries (in flight or lingering).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Forgets flights without a token (loads made while Redis was unreachable): a local write must not be
    /// answered by a load that started before it.
    pub fn forget_untokened(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, e| e.token.is_some());
    }

    fn finish(&self, key: &str, tx: &watch::Sender<Option<Shared>>, result: Shared) {
        tx.send_replace(Some(result));
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(key).filter(|e| e.rx.same_channel(&tx.subscribe())) {
            e.finished = Some(Instant::now());
        }
        map.retain(|_, e| e.finished.is_none_or(|t| t.elapsed() < LINGER));
    }
}

/// The leader's handle: finishing it (or dropping it, e.g. on cancellation) releases the followers.
pub struct Lead<'a> {
    flights: &'a Flights,
    key: String,
    tx: watch::Sender<Option<Shared>>,
    done: bool,
}

impl Lead<'_> {
    pub fn finish(mut self, result: Shared) {
        self.done = true;
        self.flights.finish(&self.key, &self.tx, result);
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.flights.finish(&self.key, &self.tx, Shared::Failed);
        }
    }
}

/// Waits for the leader's result; `None` when it failed or took longer than `wait`.
pub async fn follow(mut rx: watch::Receiver<Option<Shared>>, wait: Duration) -> Option<Shared> {
    let result = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await.ok()?.ok()?.clone();
    match result {
        Some(Shared::Failed) | None => None,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_value() {
        let flights = Flights::default();
        let Join::Leader(lead) = flights.join("k", Some("t1")) else { panic!("first is the leader") };
        let Join::Follower(rx) = flights.join("k", Some("t1")) else { panic!("second follows") };
        lead.finish(Shared::Value(Bytes::from_static(b"v")));
        match follow(rx, Duration::from_secs(1)).await {
            Some(Shared::Value(v)) => assert_eq!(v, Bytes::from_static(b"v")),
            other => panic!("unexpected {other:?}"),
        }
        // A late joiner with the same token is answered by the lingering result.
        assert!(matches!(flights.join("k", Some("t1")), Join::Follower(_)));
    }

    #[tokio::test]
    async fn a_different_token_starts_its_own_flight() {
        let flights = Flights::default();
        let _old = match flights.join("k", Some("before-write")) {
            Join::Leader(l) => l,
            Join::Follower(_) => panic!("leader expected"),
        };
        assert!(matches!(flights.join("k", Some("after-write")), Join::Leader(_)));
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_followers_to_load_themselves() {
        let flights = Flights::default();
        let lead = match flights.join("k", None) {
            Join::Leader(l) => l,
            Join::Follower(_) => panic!("leader expected"),
        };
        let Join::Follower(rx) = flights.join("k", None) else { panic!("follower expected") };
        drop(lead);
        assert!(follow(rx, Duration::from_secs(1)).await.is_none());
        assert!(matches!(flights.join("k", None), Join::Leader(_)), "a failed flight is not joined");
    }

    #[tokio::test]
    async fn followers_wait_a_bounded_time() {
        let flights = Flights::default();
        let _lead = match flights.join("k", None) {
            Join::Leader(l) => l,
            Join::Follower(_) => panic!("leader expected"),
        };
        let Join::Follower(rx) = flights.join("k", None) else { panic!("follower expected") };
        assert!(follow(rx, Duration::from_millis(20)).await.is_none());
    }

    #[test]
    fn untokened_flights_are_forgotten_on_local_writes() {
        let flights = Flights::default();
        let _a = flights.join("a", None);
        let _b = flights.join("b", Some("t"));
        flights.forget_untokened();
        assert_eq!(flights.len(), 1);
    }
}
