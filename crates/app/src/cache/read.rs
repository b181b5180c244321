//! The cache-aside read path, in the order a request takes it: the L1 (when on), one Redis round trip that
//! returns the value or the scope's generation token, and on a miss: single-flight, the stampede lock (in
//! `lock`), the PostgreSQL load, and the fill under the token read at lookup.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::connection::Command;
use super::flight::{self, Join, Shared};
use super::keys::{CacheKey, Scope};
use super::outcome::{Cached, Level, Outcome, Primed};
use super::scripts::{CLAIM, FILL, FORGET, Token};
use super::{Cache, ttl};
use crate::error::{Error, Result};

/// A database load: a closure that returns the future of a serializable value.
pub trait Load: FnOnce() -> Self::Loading {
    type Loading: Future<Output = Result<Self::Value>>;
    type Value: Serialize;
}

impl<F, Fut, T> Load for F
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
    T: Serialize,
{
    type Loading = Fut;
    type Value = T;
}

/// How a read goes: through the cache, or (`?cache=off`) to PostgreSQL only, storing nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cache,
    /// Through the cache with single-flight off for this read, whatever the configuration: the dashboard's
    /// stampede experiment, to show what single-flight saves.
    CacheUncoalesced,
    DatabaseOnly,
}

/// What the lookup found.
enum Lookup {
    Hit(Bytes),
    Miss { token: String },
}

/// Under which generation a miss's value may be stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum Generation<'a> {
    /// The scope's token as the lookup read it: the fill stores only while it is unchanged.
    Token(&'a str),
    /// The lookup failed (Redis unavailable or slow): the value is served and never stored.
    Unknown,
}

impl<'a> Generation<'a> {
    fn token(self) -> Option<&'a str> {
        match self {
            Generation::Token(t) => Some(t),
            Generation::Unknown => None,
        }
    }
}

/// Whether a request waits for its fill's reply (it needs to know the outcome) or only queues the command.
#[derive(Debug, Clone, Copy)]
pub(super) enum FillMode {
    Await,
    Queue,
}

/// A value obtained on a miss, and how.
pub(super) enum Loaded {
    /// This request queried PostgreSQL; `stored` when it waited for its fill and the fill stored the value.
    Queried { data: Bytes, db_time: Duration, stored: bool },
    /// Answered by a concurrent request's load in this process (single-flight).
    Coalesced(Bytes),
    /// Found in Redis after waiting for another replica's load (stampede lock).
    FromRedis(Bytes),
}

impl Loaded {
    fn data(&self) -> &Bytes {
        match self {
            Loaded::Queried { data, .. } | Loaded::Coalesced(data) | Loaded::FromRedis(data) => data,
        }
    }

    fn into_data(self) -> Bytes {
        match self {
            Loaded::Queried { data, .. } | Loaded::Coalesced(data) | Loaded::FromRedis(data) => data,
        }
    }
}

impl Cache {
    /// Cache-aside: the entry from L1 (when on) or Redis, else `load` from PostgreSQL and store it. Via
    /// `DatabaseOnly`, only `load`. Redis failures never fail the request: the value is loaded and the outcome
    /// is `Error`.
    pub async fn get_or_load<L: Load>(&self, key: &CacheKey, via: Via, load: L) -> Result<Cached> {
        if via == Via::DatabaseOnly {
            let (data, db_time) = Box::pin(load_json(load)).await?;
            let cached = Cached { data, outcome: Outcome::Bypass, redis_time: None, db_time: Some(db_time) };
            return Ok(self.record(key, cached));
        }
        if self.invalidation_owed(&key.scope) {
            // A write's invalidation has not reached Redis yet: the cache may hold what it replaced.
            let (data, db_time) = Box::pin(load_json(load)).await?;
            let cached = Cached { data, outcome: Outcome::Error, redis_time: None, db_time: Some(db_time) };
            return Ok(self.record(key, cached));
        }
        let l1 = self.inner.l1.as_ref().filter(|l1| l1.is_active());
        if let Some(data) = l1.and_then(|l1| l1.get(key)) {
            let cached = Cached { data, outcome: Outcome::Hit(Level::L1), redis_time: None, db_time: None };
            return Ok(self.record(key, cached));
        }
        let epoch = l1.map(|l1| l1.epoch());
        let full = self.inner.keyspace.full(key);
        let started = Instant::now();
        let looked_up = self.lookup(key, &full).await;
        let redis_time = Some(started.elapsed());
        let token;
        let generation = match looked_up {
            Ok(Lookup::Hit(data)) => {
                if let (Some(l1), Some(e)) = (l1, epoch) {
                    l1.insert_if_current(key, data.clone(), e);
                }
                let cached = Cached { data, outcome: Outcome::Hit(Level::L2), redis_time, db_time: None };
                return Ok(self.record(key, cached));
            }
            Ok(Lookup::Miss { token: t }) => {
                token = t;
                Generation::Token(&token)
            }
            Err(_) => Generation::Unknown,
        };
        let coalesce = self.inner.opts.single_flight && via == Via::Cache;
        // Boxed, as every path that loads: a load's state (single-flight, the lock, the queries) is most of this
        // future's size, and every request moves this future, hits included; a miss pays one allocation instead.
        let loaded = match Box::pin(self.load_on_miss(key, &full, generation, coalesce, load)).await {
            Err(Error::NotFound(what)) => {
                if let Generation::Token(token) = generation {
                    Box::pin(self.forget_generation(key, token)).await;
                }
                return Err(Error::NotFound(what));
            }
            loaded => loaded?,
        };
        let (outcome, db_time, in_redis) = match &loaded {
            Loaded::Queried { db_time, stored, .. } => (Outcome::Miss, Some(*db_time), *stored),
            Loaded::Coalesced(_) => {
                self.inner.metrics.coalesced.with_label_values(&[key.endpoint.label()]).inc();
                (Outcome::Miss, None, false)
            }
            Loaded::FromRedis(_) => (Outcome::Hit(Level::L2), None, true),
        };
        if let (Some(l1), Some(e), true) = (l1, epoch, in_redis) {
            l1.insert_if_current(key, loaded.data().clone(), e);
        }
        let outcome = if matches!(generation, Generation::Unknown) { Outcome::Error } else { outcome };
        let cached = Cached { data: loaded.into_data(), outcome, redis_time, db_time };
        Ok(self.record(key, cached))
    }

    /// Stores the value of `key` unless it is cached already: for warming and write-through. The same
    /// generation check as a normal miss applies, and nothing is counted as a request.
    pub async fn prime<L: Load>(&self, key: &CacheKey, load: L) -> Result<Primed> {
        let full = self.inner.keyspace.full(key);
        match self.lookup(key, &full).await {
            Ok(Lookup::Hit(data)) => Ok(Primed::AlreadyCached(data)),
            Ok(Lookup::Miss { token }) => {
                match self.load_and_fill(key, &full, Generation::Token(&token), load, FillMode::Await).await? {
                    Loaded::Queried { data, stored: true, .. } => Ok(Primed::Stored(data)),
                    loaded => Ok(Primed::NotStored(loaded.into_data())),
                }
            }
            Err(_) => Ok(Primed::NotStored(load_json(load).await?.0)),
        }
    }

    fn record(&self, key: &CacheKey, cached: Cached) -> Cached {
        self.inner.stats.record(key.endpoint, cached.outcome);
        cached
    }

    /// One round trip: the value, or the scope's generation token; a second one (`claim`) only when the scope has
    /// no token yet (see [`send_lookup`]).
    async fn lookup(&self, key: &CacheKey, full: &str) -> Result<Lookup, super::CacheError> {
        let token_key = self.inner.keyspace.generation(key.scope_name());
        let token_key = token_key.as_str();
        let index = self.catalog_index_of(key);
        let redis = &self.inner.redis;
        match redis
            .run(Command::Lookup, |mut conn| async move { send_lookup(&mut conn, full, token_key, index).await })
            .await?
        {
            Some(found) => Ok(found),
            None => redis.run(Command::Claim, |mut conn| async move { claim(&mut conn, token_key).await }).await,
        }
    }

    /// A miss: share a concurrent load of the same key and generation when single-flight is on, else lead.
    async fn load_on_miss<L: Load>(
        &self,
        key: &CacheKey,
        full: &str,
        generation: Generation<'_>,
        coalesce: bool,
        load: L,
    ) -> Result<Loaded> {
        if !coalesce {
            return self.lead(key, full, generation, load).await;
        }
        match self.inner.flights.join(full, generation.token()) {
            Join::Leader(lead) => {
                let result = self.lead(key, full, generation, load).await;
                lead.finish(match &result {
                    Ok(l) => Shared::Value(l.data().clone()),
                    Err(Error::NotFound(what)) => Shared::NotFound(what.clone()),
                    Err(_) => Shared::Failed,
                });
                result
            }
            Join::Follower(rx) => match flight::follow(rx, self.inner.opts.single_flight_wait).await {
                Some(Shared::Value(data)) => Ok(Loaded::Coalesced(data)),
                Some(Shared::NotFound(what)) => Err(Error::NotFound(what)),
                // The leader's query failed: its followers share the failure rather than each repeating it
                // against a database that is failing or overloaded.
                Some(Shared::Failed) => Err(Error::LoadFailed),
                // The leader is slow: ask the database ourselves.
                Some(Shared::Cancelled) | None => {
                    self.load_and_fill(key, full, generation, load, FillMode::Queue).await
                }
            },
        }
    }

    /// The one load of a key in this process; with the stampede lock, the one load across replicas.
    async fn lead<L: Load>(&self, key: &CacheKey, full: &str, generation: Generation<'_>, load: L) -> Result<Loaded> {
        match generation {
            Generation::Token(token) if self.inner.opts.stampede_lock => {
                self.load_under_lock(key, full, token, load).await
            }
            _ => self.load_and_fill(key, full, generation, load, FillMode::Queue).await,
        }
    }

    /// Loads from PostgreSQL and stores the value under `generation` (nothing when it is unknown).
    pub(super) async fn load_and_fill<L: Load>(
        &self,
        key: &CacheKey,
        full: &str,
        generation: Generation<'_>,
        load: L,
        mode: FillMode,
    ) -> Result<Loaded> {
        let (data, db_time) = load_json(load).await?;
        let stored = match (generation, mode) {
            (Generation::Unknown, _) => false,
            (Generation::Token(token), FillMode::Await) => self.fill(key, full, token, &data).await,
            (Generation::Token(token), FillMode::Queue) => {
                self.queue_fill(key, full, token, &data).await;
                false
            }
        };
        Ok(Loaded::Queried { data, db_time, stored })
    }

    /// The fill as one `EVAL` command (never EVALSHA, which becomes two commands, NOSCRIPT then EVAL, on a Redis
    /// that has not seen the script yet), and the TTL it gives.
    fn fill_command(&self, key: &CacheKey, full: &str, token: &str, data: &Bytes) -> (::redis::Cmd, Duration) {
        let ttl = ttl::random_jitter(*self.inner.opts.ttls.get(key.endpoint), self.inner.opts.ttl_jitter_pct);
        let index = self.catalog_index_of(key);
        let mut cmd = ::redis::cmd("EVAL");
        let token_key = self.inner.keyspace.generation(key.scope_name());
        cmd.arg(FILL).arg(if index.is_some() { 3 } else { 2 }).arg(full).arg(token_key);
        if let Some(index) = index {
            cmd.arg(index);
        }
        cmd.arg(token).arg(data.as_ref()).arg(ttl.as_millis() as u64);
        (cmd, ttl)
    }

    /// The catalogue index, for entries of the catalogue scope (the ones a write finds through it).
    fn catalog_index_of(&self, key: &CacheKey) -> Option<&str> {
        matches!(key.scope, Scope::Catalog).then(|| self.inner.keyspace.catalog_index())
    }

    /// The lookup of something that does not exist created its scope's token: remove it again (unless a write
    /// or another lookup replaced it), queued like a fill, so tokens are kept only for what exists.
    async fn forget_generation(&self, key: &CacheKey, token: &str) {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(FORGET).arg(1).arg(self.inner.keyspace.generation(key.scope_name())).arg(token);
        let _ = self.inner.redis.send_without_reply(Command::ForgetGeneration, cmd).await;
    }

    /// Queues the fill without waiting for its reply. Redis runs one connection's commands in order, so any later
    /// lookup from this process sees the value, while the response does not wait a round trip for it.
    async fn queue_fill(&self, key: &CacheKey, full: &str, token: &str, data: &Bytes) {
        let (cmd, ttl) = self.fill_command(key, full, token, data);
        if self.inner.redis.send_without_reply(Command::FillQueued, cmd).await.is_ok() {
            self.inner.metrics.ttl_seconds.observe(ttl.as_secs_f64());
        }
    }

    /// Stores the loaded value, with a jittered TTL, unless a write changed the scope's generation meanwhile.
    /// Failures are logged and counted by the Redis layer; the request has its answer already.
    async fn fill(&self, key: &CacheKey, full: &str, token: &str, data: &Bytes) -> bool {
        let (cmd, ttl) = self.fill_command(key, full, token, data);
        let stored: Result<i64, _> =
            self.inner.redis.run(Command::Fill, |mut conn| async move { cmd.query_async(&mut conn).await }).await;
        match stored {
            Ok(1) => {
                self.inner.metrics.ttl_seconds.observe(ttl.as_secs_f64());
                true
            }
            Ok(_) => {
                tracing::debug!(key = key.name(), "fill skipped: a write changed the data while it was loading");
                false
            }
            Err(_) => false,
        }
    }
}

/// The lookup: one `MGET` of the entry and the scope's token (and, for a catalogue entry, the catalogue index,
/// named only so that an LRU policy sees the index used as often as the entries it lists: `MGET` answers nil
/// for a key that holds no string). One command and one reply: a hit costs Redis about what a `GET` costs, and
/// a Lua script doing the same costs it several µs more per call. `None`: a miss of a scope that has no token.
///
/// The token is read in the same command as the entry, so before any load from PostgreSQL, which is all the
/// fill's check relies on. Only a scope without a token (never read since Redis started, or its token evicted)
/// takes a second round trip, [`claim`], before its load.
async fn send_lookup(
    conn: &mut ::redis::aio::ConnectionManager,
    full: &str,
    token_key: &str,
    index: Option<&str>,
) -> Result<Option<Lookup>, ::redis::RedisError> {
    lookup_reply(lookup_command(full, token_key, index).query_async(conn).await?)
}

/// The lookup's reply, the entry's value first and the token second: the value (a hit), else the token (a
/// miss), else `None` (a miss of a scope without a token).
fn lookup_reply(reply: ::redis::Value) -> Result<Option<Lookup>, ::redis::RedisError> {
    use ::redis::Value;
    let Value::Array(values) = reply else { return Err(unexpected("the lookup's reply is not a list")) };
    let mut values = values.into_iter();
    match (values.next(), values.next()) {
        (Some(Value::BulkString(value)), Some(_)) => Ok(Some(Lookup::Hit(Bytes::from(value)))),
        (Some(Value::Nil), Some(Value::BulkString(token))) => Ok(Some(Lookup::Miss { token: text(token) })),
        (Some(Value::Nil), Some(Value::Nil)) => Ok(None),
        _ => Err(unexpected("the lookup got neither a value nor a token")),
    }
}

/// A scope without a token gets one (the `CLAIM` script): its miss, with the token to fill under.
async fn claim(conn: &mut ::redis::aio::ConnectionManager, token_key: &str) -> Result<Lookup, ::redis::RedisError> {
    let token: Option<Vec<u8>> = claim_command(token_key, &Token::new()).query_async(conn).await?;
    token.map(|t| Lookup::Miss { token: text(t) }).ok_or_else(|| unexpected("no token after the claim"))
}

/// `MGET` the entry, the scope's token and (catalogue entries only) the catalogue index.
fn lookup_command(full: &str, token_key: &str, index: Option<&str>) -> ::redis::Cmd {
    match index {
        Some(index) => command("MGET", &[full, token_key, index]),
        None => command("MGET", &[full, token_key]),
    }
}

/// For a scope without a token: the `CLAIM` script, which sets `fresh` unless the scope has a token by now and
/// returns whichever it has.
fn claim_command(token_key: &str, fresh: &Token) -> ::redis::Cmd {
    command("EVAL", &[CLAIM, "1", token_key, fresh.as_str()])
}

/// A command with its argument list sized up front (it would otherwise grow, and move, on each argument).
fn command(name: &str, args: &[&str]) -> ::redis::Cmd {
    let size = name.len() + args.iter().map(|a| a.len()).sum::<usize>();
    let mut cmd = ::redis::Cmd::with_capacity(args.len() + 1, size);
    cmd.arg(name);
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn unexpected(what: &'static str) -> ::redis::RedisError {
    ::redis::RedisError::from((::redis::ErrorKind::UnexpectedReturnType, what))
}

/// The app's lookup of one product on its own, for `cache-demo-ref lookup`: the least a server can do that keeps
/// the generation check sends exactly what a product read sends here.
pub struct ProductLookup {
    keyspace: super::Keyspace,
}

impl ProductLookup {
    /// For the app's entries under `prefix` (`CACHE_PREFIX`).
    pub fn new(prefix: &str) -> Self {
        ProductLookup { keyspace: super::Keyspace::new(prefix) }
    }

    /// Product `id`'s lookup, sent as the app sends it: the value on a hit, `None` on a miss (the scope's token
    /// read, or created).
    pub async fn send(
        &self,
        conn: &mut ::redis::aio::ConnectionManager,
        id: i32,
    ) -> ::redis::RedisResult<Option<Bytes>> {
        let key = CacheKey::product(id);
        let (full, token_key) = (self.keyspace.full(&key), self.keyspace.generation(key.scope_name()));
        match send_lookup(conn, &full, &token_key, None).await? {
            Some(Lookup::Hit(value)) => Ok(Some(value)),
            Some(Lookup::Miss { .. }) => Ok(None),
            None => claim(conn, &token_key).await.map(|_| None),
        }
    }
}

/// Runs the query and serializes its result, timed.
async fn load_json<L: Load>(load: L) -> Result<(Bytes, Duration)> {
    let started = Instant::now();
    let value = load().await?;
    let db_time = started.elapsed();
    // Serializing plain data structures to a Vec cannot fail.
    let data = serde_json::to_vec(&value).unwrap_or_default();
    Ok((Bytes::from(data), db_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_is_one_mget_and_the_claim_one_eval() {
        let packed = |c: &::redis::Cmd| String::from_utf8(c.get_packed_command()).expect("utf-8");
        assert_eq!(
            packed(&lookup_command("p:product:1", "p:generation:product:1", None)),
            "*3\r\n$4\r\nMGET\r\n$11\r\np:product:1\r\n$22\r\np:generation:product:1\r\n"
        );
        let listed = packed(&lookup_command("p:products:top:5", "p:generation:catalog", Some("p:catalog-index")));
        assert!(listed.starts_with("*4\r\n$4\r\nMGET\r\n"), "{listed}");
        assert!(listed.ends_with("$15\r\np:catalog-index\r\n"), "{listed}");
        let fresh = Token::new();
        let claim = packed(&claim_command("p:generation:product:1", &fresh));
        assert!(claim.starts_with("*5\r\n$4\r\nEVAL\r\n"), "{claim}");
        assert!(claim.ends_with(&format!("$22\r\np:generation:product:1\r\n$16\r\n{}\r\n", fresh.as_str())), "{claim}");
    }

    #[test]
    fn the_reply_says_hit_miss_or_no_token() {
        use ::redis::Value::{Array, BulkString, Int, Nil};
        let value = || BulkString(br#"{"id":1}"#.to_vec());
        let token = || BulkString(b"0123456789abcdef".to_vec());
        let hit = lookup_reply(Array(vec![value(), token()]));
        assert!(matches!(hit, Ok(Some(Lookup::Hit(v))) if &v[..] == br#"{"id":1}"#));
        assert!(matches!(lookup_reply(Array(vec![value(), Nil])), Ok(Some(Lookup::Hit(_)))), "a hit needs no token");
        assert!(matches!(lookup_reply(Array(vec![value(), token(), Nil])), Ok(Some(Lookup::Hit(_)))), "the index");
        let miss = lookup_reply(Array(vec![Nil, token(), Nil]));
        assert!(matches!(miss, Ok(Some(Lookup::Miss { token })) if token == "0123456789abcdef"));
        assert!(matches!(lookup_reply(Array(vec![Nil, Nil])), Ok(None)), "no token: claim one");
        assert!(lookup_reply(Array(vec![Int(1), token()])).is_err());
        assert!(lookup_reply(Array(vec![Nil, Int(1)])).is_err());
        assert!(lookup_reply(Array(vec![value()])).is_err());
        assert!(lookup_reply(Array(vec![])).is_err());
        assert!(lookup_reply(value()).is_err(), "not a list");
    }

    /// Two lookups that both found no token claim one each: the second gets the first one's, as a lookup gets a
    /// write's that came first, so both load under the token the scope keeps.
    #[tokio::test]
    async fn a_claim_keeps_the_token_another_claim_or_a_write_set_first() {
        let redis = tokio::task::spawn_blocking(cache_demo_testkit::shared_redis).await.expect("Redis");
        let client = ::redis::Client::open(redis.url()).expect("url");
        let mut conn = ::redis::aio::ConnectionManager::new(client).await.expect("connection");
        let key = format!("claim-race-{}:generation:product:1", std::process::id());
        let stored = |conn: &mut ::redis::aio::ConnectionManager| {
            let mut conn = conn.clone();
            let key = key.clone();
            async move { ::redis::cmd("GET").arg(&key).query_async::<Option<String>>(&mut conn).await.expect("GET") }
        };

        let Lookup::Miss { token: first } = claim(&mut conn, &key).await.expect("first claim") else {
            panic!("a claim is a miss")
        };
        assert_eq!(stored(&mut conn).await.as_deref(), Some(first.as_str()), "the first claim sets its token");
        let Lookup::Miss { token: second } = claim(&mut conn, &key).await.expect("second claim") else {
            panic!("a claim is a miss")
        };
        assert_eq!(second, first, "the second claim answers the token it found, not its own");
        assert_eq!(stored(&mut conn).await.as_deref(), Some(first.as_str()));

        // A write's token, set between a lookup and its claim, is kept the same way.
        let written = Token::new();
        ::redis::cmd("SET").arg(&key).arg(written.as_str()).query_async::<()>(&mut conn).await.expect("SET");
        let Lookup::Miss { token } = claim(&mut conn, &key).await.expect("claim") else { panic!("a miss") };
        assert_eq!(token, written.as_str());
        ::redis::cmd("DEL").arg(&key).query_async::<()>(&mut conn).await.expect("DEL");
    }
}
