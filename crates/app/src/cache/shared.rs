//! Redis commands behind the dashboard's experiments and the picture the replicas share: an entry read
//! without filling or counting anything, `maxmemory` shrunk and put back, each replica's published counters,
//! the flush epoch and the artificial database delay every replica applies. Names are in `keys`.

use bytes::Bytes;

/// What replicas share lives this long after the last replica touched it: nothing outlives the app for good.
pub const SHARED_TTL_SECS: u64 = 600;
/// Each replica's report lives in the fleet hash, which expires this long after the last report.
const FLEET_TTL_SECS: u64 = 60;

use super::connection::Command;
use super::keys::CacheKey;
use super::{Cache, CacheError};

/// What one exchange with the other replicas returns.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Every replica's report (this one's included), by replica id.
    pub reports: Vec<(String, String)>,
    /// The token the last flush left; `None` before the first.
    pub epoch: Option<String>,
    /// The artificial delay set from a dashboard, in milliseconds.
    pub db_delay_ms: Option<u64>,
    /// Redis's `maxmemory` before an experiment first shrank it.
    pub configured_maxmemory: Option<u64>,
}

impl Cache {
    /// An entry as Redis holds it now and its time to live in milliseconds (`None`: no expiry).
    pub async fn peek(&self, key: &CacheKey) -> Result<Option<(Bytes, Option<u64>)>, CacheError> {
        let full = self.inner.keyspace.full(key);
        let (value, pttl): (Option<Vec<u8>>, i64) = self
            .inner
            .redis
            .run(Command::Peek, |mut conn| async move {
                ::redis::pipe().get(&full).cmd("PTTL").arg(&full).query_async(&mut conn).await
            })
            .await?;
        Ok(value.map(|v| (Bytes::from(v), u64::try_from(pttl).ok())))
    }

    /// Redis's `maxmemory` now, in bytes (0: no limit).
    pub async fn maxmemory(&self) -> Result<u64, CacheError> {
        let pair: Vec<String> = self
            .inner
            .redis
            .run(Command::ConfigGet, |mut conn| async move {
                ::redis::cmd("CONFIG").arg("GET").arg("maxmemory").query_async(&mut conn).await
            })
            .await?;
        Ok(pair.get(1).and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    pub async fn set_maxmemory(&self, bytes: u64) -> Result<(), CacheError> {
        self.inner
            .redis
            .run(Command::ConfigSet, |mut conn| async move {
                ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(bytes).query_async::<()>(&mut conn).await
            })
            .await
    }

    /// The `maxmemory` Redis had before an experiment first shrank it; `None` before the first. It is kept (a
    /// Redis restart, which resets `maxmemory`, loses it too), and put back by the replicas if evicted.
    pub async fn configured_maxmemory(&self) -> Result<Option<u64>, CacheError> {
        let key = self.inner.keyspace.lab_maxmemory();
        let value: Option<u64> = self
            .inner
            .redis
            .run(Command::Get, |mut conn| async move { ::redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        Ok(value)
    }

    /// Remembers the configured `maxmemory` unless it is known already (an earlier value is the real one).
    pub async fn remember_configured_maxmemory(&self, bytes: u64) -> Result<(), CacheError> {
        self.set_shared(self.inner.keyspace.lab_maxmemory(), bytes.to_string(), Write::UnlessKnown).await
    }

    /// Publishes this replica's report and reads everyone's, the flush epoch and the shared settings, keeping them
    /// alive while any replica runs: one round trip.
    pub async fn exchange(&self, replica: &str, report: &str) -> Result<Exchange, CacheError> {
        let ks = &self.inner.keyspace;
        let (fleet, epoch_key, delay_key, maxmemory_key) =
            (ks.fleet(), ks.fleet_epoch(), ks.lab_db_delay(), ks.lab_maxmemory());
        let (reports, epoch, db_delay_ms, configured_maxmemory) = self
            .inner
            .redis
            .run(Command::Exchange, |mut conn| async move {
                ::redis::pipe()
                    .hset(fleet, replica, report)
                    .ignore()
                    .expire(fleet, FLEET_TTL_SECS as i64)
                    .ignore()
                    .expire(epoch_key, SHARED_TTL_SECS as i64)
                    .ignore()
                    .expire(delay_key, SHARED_TTL_SECS as i64)
                    .ignore()
                    .expire(maxmemory_key, SHARED_TTL_SECS as i64)
                    .ignore()
                    .hgetall(fleet)
                    .get(epoch_key)
                    .get(delay_key)
                    .get(maxmemory_key)
                    .query_async::<(Vec<(String, String)>, Option<String>, Option<u64>, Option<u64>)>(&mut conn)
                    .await
            })
            .await?;
        Ok(Exchange { reports, epoch, db_delay_ms, configured_maxmemory })
    }

    /// Removes the reports of replicas that stopped publishing.
    pub async fn drop_reports(&self, replicas: &[String]) -> Result<(), CacheError> {
        if replicas.is_empty() {
            return Ok(());
        }
        let fleet = self.inner.keyspace.fleet();
        self.inner
            .redis
            .run(Command::Hdel, |mut conn| async move {
                ::redis::cmd("HDEL").arg(fleet).arg(replicas).query_async::<()>(&mut conn).await
            })
            .await
    }

    /// Starts a new counting epoch (after a flush): every replica resets its counters when it sees it.
    pub async fn new_epoch(&self, token: &str) -> Result<(), CacheError> {
        self.set_shared(self.inner.keyspace.fleet_epoch(), token.to_owned(), Write::Always).await
    }

    /// Sets the artificial delay every replica applies.
    pub async fn share_db_delay(&self, ms: u64) -> Result<(), CacheError> {
        self.set_shared(self.inner.keyspace.lab_db_delay(), ms.to_string(), Write::Always).await
    }

    /// One shared setting, kept [`SHARED_TTL_SECS`] unless a replica's exchange keeps it alive.
    async fn set_shared(&self, key: &str, value: String, write: Write) -> Result<(), CacheError> {
        self.inner
            .redis
            .run(Command::Set, |mut conn| async move {
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(key).arg(value).arg("EX").arg(SHARED_TTL_SECS);
                if write == Write::UnlessKnown {
                    cmd.arg("NX");
                }
                cmd.query_async::<()>(&mut conn).await
            })
            .await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Always,
    UnlessKnown,
}
