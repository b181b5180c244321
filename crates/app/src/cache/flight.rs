//! Single-flight: concurrent misses of one key in this process share one database load.
//!
//! A flight is tied to the generation token its leader read. A request joins only a flight with the token it
//! read itself, so a load that started before a write (old token) never answers a request that started after
//! it (new token), in this replica or any other.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

/// What a finished flight hands to its followers.
#[derive(Debug, Clone)]
pub enum Shared {
    Value(Bytes),
    NotFound(String),
    /// The leader's load failed: its followers fail too instead of each querying a failing database.
    Failed,
    /// The leader was dropped (its client went away): followers load for themselves.
    Cancelled,
}

/// A finished flight keeps answering late joiners briefly (their lookup missed just before the leader's
/// fill landed), which is safe because joining requires the same generation token.
const LINGER: Duration = Duration::from_millis(200);

struct Entry {
    id: u64,
    token: Option<String>,
    rx: watch::Receiver<Option<Shared>>,
    finished: Option<Instant>,
}

#[derive(Default)]
struct Table {
    map: HashMap<String, Entry>,
    /// Finished flights, oldest first, so that expiring them costs only the expired ones.
    finished: VecDeque<(Instant, String, u64)>,
    next_id: u64,
}

impl Table {
    fn expire(&mut self, now: Instant, linger: Duration) {
        while let Some((at, _, _)) = self.finished.front() {
            if now.saturating_duration_since(*at) < linger {
                break;
            }
            if let Some((_, key, id)) = self.finished.pop_front()
                && self.map.get(&key).is_some_and(|e| e.id == id)
            {
                self.map.remove(&key);
            }
        }
    }
}

pub struct Flights {
    table: Mutex<Table>,
    linger: Duration,
}

impl Default for Flights {
    fn default() -> Self {
        Flights::with_linger(LINGER)
    }
}

pub enum Join<'a> {
    Leader(Lead<'a>),
    Follower(watch::Receiver<Option<Shared>>),
}

impl Flights {
    pub fn with_linger(linger: Duration) -> Self {
        Flights { table: Mutex::default(), linger }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn join(&self, key: &str, token: Option<&str>) -> Join<'_> {
        let mut table = self.lock();
        if let Some(e) = table.map.get(key) {
            let fresh = e.finished.is_none_or(|t| t.elapsed() < self.linger);
            let failed = matches!(*e.rx.borrow(), Some(Shared::Failed | Shared::Cancelled));
            if fresh && !failed && e.token.as_deref() == token {
                return Join::Follower(e.rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        let id = table.next_id;
        table.next_id += 1;
        table.map.insert(key.to_owned(), Entry { id, token: token.map(str::to_owned), rx, finished: None });
        Join::Leader(Lead { flights: self, key: key.to_owned(), id, tx, done: false })
    }

    /// Number of entries (in flight or lingering).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Forgets flights without a token (loads made while Redis was unreachable): a local write must not be
    /// answered by a load that started before it.
    pub fn forget_untokened(&self) {
        self.lock().map.retain(|_, e| e.token.is_some());
    }

    /// Forgets finished flights, so that nobody joins them any more: after a flush, whose misses must store
    /// their values again. A lingering result is still correct (its token is unchanged, the tokens outlive a
    /// flush), but a follower never stores what it was handed.
    pub fn forget_finished(&self) {
        let mut table = self.lock();
        table.map.retain(|_, e| e.finished.is_none());
        table.finished.clear();
    }

    fn finish(&self, key: String, id: u64, tx: &watch::Sender<Option<Shared>>, result: Shared) {
        tx.send_replace(Some(result));
        let now = Instant::now();
        let mut table = self.lock();
        if let Some(e) = table.map.get_mut(&key).filter(|e| e.id == id) {
            e.finished = Some(now);
            table.finished.push_back((now, key, id));
        }
        table.expire(now, self.linger);
    }
}

/// The leader's handle: finishing it (or dropping it, e.g. on cancellation) releases the followers.
pub struct Lead<'a> {
    flights: &'a Flights,
    key: String,
    id: u64,
    tx: watch::Sender<Option<Shared>>,
    done: bool,
}

impl Lead<'_> {
    pub fn finish(mut self, result: Shared) {
        self.done = true;
        self.flights.finish(std::mem::take(&mut self.key), self.id, &self.tx, result);
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.flights.finish(std::mem::take(&mut self.key), self.id, &self.tx, Shared::Cancelled);
        }
    }
}

/// Waits for the leader's result; `None` when it was cancelled or took longer than `wait`.
pub async fn follow(mut rx: watch::Receiver<Option<Shared>>, wait: Duration) -> Option<Shared> {
    let result = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await.ok()?.ok()?.clone();
    match result {
        Some(Shared::Cancelled) | None => None,
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
    async fn after_a_flush_a_finished_flight_has_no_followers_and_a_running_one_keeps_them() {
        let flights = Flights::default();
        let Join::Leader(done) = flights.join("done", Some("t1")) else { panic!("leader") };
        done.finish(Shared::Value(Bytes::from_static(b"v")));
        let Join::Leader(_running) = flights.join("running", Some("t1")) else { panic!("leader") };
        flights.forget_finished();
        assert!(matches!(flights.join("done", Some("t1")), Join::Leader(_)), "a new load, which will store");
        assert!(matches!(flights.join("running", Some("t1")), Join::Follower(_)));
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
    async fn a_failed_leader_fails_its_followers_instead_of_each_querying() {
        let flights = Flights::default();
        let Join::Leader(lead) = flights.join("k", Some("t")) else { panic!("leader expected") };
        let Join::Follower(rx) = flights.join("k", Some("t")) else { panic!("follower expected") };
        lead.finish(Shared::Failed);
        assert!(matches!(follow(rx, Duration::from_secs(1)).await, Some(Shared::Failed)));
        assert!(matches!(flights.join("k", Some("t")), Join::Leader(_)), "a later request leads anew");
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
    fn finished_flights_are_removed_after_lingering() {
        let flights = Flights::with_linger(Duration::from_millis(20));
        for key in ["a", "b", "c"] {
            let Join::Leader(lead) = flights.join(key, Some("t")) else { panic!("leader expected") };
            lead.finish(Shared::Value(Bytes::from_static(b"v")));
        }
        let Join::Leader(_running) = flights.join("d", Some("t")) else { panic!("leader expected") };
        assert_eq!(flights.len(), 4, "finished flights linger");
        std::thread::sleep(Duration::from_millis(30));
        let Join::Leader(lead) = flights.join("e", Some("t")) else { panic!("leader expected") };
        lead.finish(Shared::Value(Bytes::from_static(b"v")));
        // The three expired flights are gone; the running one and the one just finished stay.
        assert_eq!(flights.len(), 2);
        assert!(matches!(flights.join("e", Some("t")), Join::Follower(_)));
        assert!(matches!(flights.join("d", Some("t")), Join::Follower(_)));
    }

    #[test]
    fn an_expired_flight_does_not_remove_its_successor() {
        let flights = Flights::with_linger(Duration::from_millis(20));
        let Join::Leader(old) = flights.join("k", Some("before-write")) else { panic!("leader expected") };
        old.finish(Shared::Value(Bytes::from_static(b"old")));
        // A write changed the token: a new flight of the same key replaces the lingering one.
        let Join::Leader(_new) = flights.join("k", Some("after-write")) else { panic!("leader expected") };
        std::thread::sleep(Duration::from_millis(30));
        // Expiring the old flight's record (on the next finish) must leave the running flight in place.
        let Join::Leader(other) = flights.join("other", None) else { panic!("leader expected") };
        other.finish(Shared::Failed);
        assert!(matches!(flights.join("k", Some("after-write")), Join::Follower(_)));
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
