//! Plain Redis commands over this app's keys, for the admin routes, the stats and the probes: SCAN (never
//! KEYS), UNLINK in batches, TTL, INFO, PING.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::connection::Command;
use super::keys::CacheKey;
use super::{Cache, CacheError};

const SCAN_BATCH: usize = 500;
/// SCAN calls a key count for `/api/stats` makes before it answers from the last full count: SCAN walks the
/// whole keyspace whatever its MATCH, so a large keyspace is counted in the background instead.
const COUNT_BUDGET: usize = 4;
const COUNT_BATCH: usize = 1_000;
/// How long a background count answers before another is started.
const COUNT_FRESH: Duration = Duration::from_secs(30);

/// The last complete count of this app's keys, and whether one is running.
#[derive(Default)]
pub(super) struct KeyCount {
    last: Mutex<Option<(Instant, usize)>>,
    counting: AtomicBool,
}

impl Cache {
    /// Every key of this app, by SCAN.
    pub async fn scan_keys(&self) -> Result<Vec<String>, CacheError> {
        Ok(self.scan_matching(&self.inner.keyspace.all_pattern(), usize::MAX).await?.0)
    }

    /// How many keys this app has (what replicas share aside), for `/api/stats`: exact when a few SCAN calls cover the keyspace, else the
    /// last full count (made in the background, at most one at a time); `None` until there is one.
    pub async fn count_keys(&self) -> Result<Option<usize>, CacheError> {
        if let Some(n) = self.count_matching(Some(COUNT_BUDGET)).await? {
            self.remember_count(n);
            return Ok(Some(n));
        }
        let counts = &self.inner.key_count;
        let last = *counts.last.lock().unwrap_or_else(|e| e.into_inner());
        let stale = last.is_none_or(|(at, _)| at.elapsed() > COUNT_FRESH);
        if stale && !counts.counting.swap(true, Ordering::AcqRel) {
            let cache = self.clone();
            tokio::spawn(async move {
                if let Ok(Some(n)) = cache.count_matching(None).await {
                    cache.remember_count(n);
                }
                cache.inner.key_count.counting.store(false, Ordering::Release);
            });
        }
        Ok(last.map(|(_, n)| n))
    }

    fn remember_count(&self, n: usize) {
        *self.inner.key_count.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), n));
    }

    /// Counts this app's keys by SCAN without keeping them; `None` when `budget` calls did not finish.
    async fn count_matching(&self, budget: Option<usize>) -> Result<Option<usize>, CacheError> {
        let pattern = self.inner.keyspace.all_pattern();
        let pattern = pattern.as_str();
        let mut cursor: u64 = 0;
        // SCAN may return a key more than once.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..budget.unwrap_or(usize::MAX) {
            let (next, batch) = self.scan_page(cursor, pattern, COUNT_BATCH).await?;
            let ks = &self.inner.keyspace;
            seen.extend(batch.into_iter().filter(|k| ks.owns(k) && !ks.is_shared_state(k)));
            cursor = next;
            if cursor == 0 {
                return Ok(Some(seen.len()));
            }
        }
        Ok(None)
    }

    /// Keys matching a full SCAN pattern, at most `limit` of them; `true` when more matched. Keys outside
    /// this app's prefix are never returned, whatever the pattern.
    pub async fn scan_matching(&self, pattern: &str, limit: usize) -> Result<(Vec<String>, bool), CacheError> {
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch) = self.scan_page(cursor, pattern, SCAN_BATCH).await?;
            keys.extend(batch.into_iter().filter(|k| self.inner.keyspace.owns(k)));
            cursor = next;
            // SCAN may return a key more than once.
            keys.sort_unstable();
            keys.dedup();
            if keys.len() > limit {
                keys.truncate(limit);
                return Ok((keys, true));
            }
            if cursor == 0 {
                return Ok((keys, false));
            }
        }
    }

    /// One `SCAN cursor MATCH pattern COUNT count`: the next cursor and the keys of this page.
    async fn scan_page(&self, cursor: u64, pattern: &str, count: usize) -> Result<(u64, Vec<String>), CacheError> {
        self.inner
            .redis
            .run(Command::Scan, |mut conn| async move {
                ::redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await
            })
            .await
    }

    /// `TTL` of each key, in one round trip (-2: gone, -1: no expiry).
    pub async fn ttls_of(&self, keys: &[String]) -> Result<Vec<i64>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .redis
            .run(Command::Ttl, |mut conn| async move {
                let mut pipe = ::redis::pipe();
                for k in keys {
                    pipe.cmd("TTL").arg(k);
                }
                pipe.query_async(&mut conn).await
            })
            .await
    }

    pub(super) async fn unlink(&self, keys: &[String]) -> Result<(), CacheError> {
        for chunk in keys.chunks(SCAN_BATCH) {
            let _: i64 = self
                .inner
                .redis
                .run(Command::Unlink, |mut conn| async move {
                    ::redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await
                })
                .await?;
        }
        Ok(())
    }

    /// Remaining time to live of a key (`TTL`): `None` when the key does not exist.
    pub async fn ttl(&self, key: &CacheKey) -> Result<Option<i64>, CacheError> {
        let full = self.inner.keyspace.full(key);
        let ttl: i64 = self
            .inner
            .redis
            .run(Command::Ttl, |mut conn| async move { ::redis::cmd("TTL").arg(&full).query_async(&mut conn).await })
            .await?;
        Ok((ttl >= -1).then_some(ttl))
    }

    /// Selected fields of `INFO memory stats server`.
    pub async fn info(&self) -> Result<Vec<(String, String)>, CacheError> {
        let text: String = self
            .inner
            .redis
            .run(Command::Info, |mut conn| async move {
                ::redis::cmd("INFO").arg("memory").arg("stats").arg("server").query_async(&mut conn).await
            })
            .await?;
        Ok(parse_info(&text))
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        let _: String = self
            .inner
            .redis
            .run(Command::Ping, |mut conn| async move { ::redis::cmd("PING").query_async(&mut conn).await })
            .await?;
        Ok(())
    }
}

/// `INFO` text → (field, value) pairs, comments and blank lines skipped.
fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_is_parsed() {
        let info = "# Memory\r\nused_memory:1024\r\nmaxmemory_policy:allkeys-lru\r\n\r\n# Stats\r\nevicted_keys:3\r\n";
        let pairs = parse_info(info);
        assert_eq!(pairs.len(), 3);
        assert!(pairs.contains(&("maxmemory_policy".into(), "allkeys-lru".into())));
        assert!(pairs.contains(&("evicted_keys".into(), "3".into())));
    }
}
