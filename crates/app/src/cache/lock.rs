//! The stampede lock (`STAMPEDE_LOCK`): across replicas, one miss of a key loads from PostgreSQL while the
//! others wait, bounded, for its value to appear in Redis. The lock is a short-lived `SET NX PX` key
//! ([`Keyspace::lock`](super::keys::Keyspace::lock)) released only by its owner.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Cache;
use super::connection::Command;
use super::keys::CacheKey;
use super::read::{FillMode, Generation, Load, Loaded};
use super::scripts::Token;
use crate::error::Result;

/// How often a waiting replica looks for the value.
const POLL: Duration = Duration::from_millis(10);

impl Cache {
    /// A miss under generation `token` with the stampede lock on: load and store while holding the lock, or
    /// wait for the replica that holds it.
    pub(super) async fn load_under_lock<L: Load>(
        &self,
        key: &CacheKey,
        full: &str,
        token: &str,
        load: L,
    ) -> Result<Loaded> {
        let generation = Generation::Token(token);
        let lock_key = self.inner.keyspace.lock(key);
        let owner = Token::new();
        let ttl_ms = self.inner.opts.stampede_lock_ttl.as_millis() as u64;
        let acquired: Result<Option<String>, _> = self
            .inner
            .redis
            .run(Command::Lock, |mut conn| {
                let lock_key = &lock_key;
                async move {
                    ::redis::cmd("SET")
                        .arg(lock_key)
                        .arg(owner.as_str())
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await;
        match acquired {
            Ok(Some(_)) => {
                self.inner.metrics.stampede_lock.with_label_values(&["acquired"]).inc();
                // Other replicas poll for the value while the lock is held: store it before releasing.
                let result = self.load_and_fill(key, full, generation, load, FillMode::Await).await;
                let script = &self.inner.unlock;
                let _: Result<i64, _> = self
                    .inner
                    .redis
                    .run(Command::Unlock, |mut conn| async move {
                        script.key(&lock_key).arg(owner.as_str()).invoke_async(&mut conn).await
                    })
                    .await;
                result
            }
            Ok(None) => {
                // Another replica is loading: wait for its value to appear, bounded, then load ourselves.
                let deadline =
                    Instant::now() + self.inner.opts.single_flight_wait.min(self.inner.opts.stampede_lock_ttl);
                while Instant::now() < deadline {
                    tokio::time::sleep(POLL).await;
                    let found: Result<Option<Vec<u8>>, _> = self
                        .inner
                        .redis
                        .run(Command::Get, |mut conn| async move {
                            ::redis::cmd("GET").arg(full).query_async(&mut conn).await
                        })
                        .await;
                    match found {
                        Ok(Some(bytes)) => {
                            self.inner.metrics.stampede_lock.with_label_values(&["waited"]).inc();
                            return Ok(Loaded::FromRedis(Bytes::from(bytes)));
                        }
                        Ok(None) => continue,
                        Err(_) => break,
                    }
                }
                self.inner.metrics.stampede_lock.with_label_values(&["timeout"]).inc();
                self.load_and_fill(key, full, generation, load, FillMode::Queue).await
            }
            Err(_) => self.load_and_fill(key, full, generation, load, FillMode::Queue).await,
        }
    }
}
