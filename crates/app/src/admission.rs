//! Admission of heavy work, so that it cannot starve ordinary traffic: one dashboard load test at a time per
//! replica, and reads that bypass the cache (`?cache=off`, the dashboard's database path) limited to part of
//! the database pool, leaving the rest to cached reads' misses and writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

pub struct Admission {
    load_test: Arc<Semaphore>,
    bypass: Arc<Semaphore>,
    bypass_wait: Duration,
}

impl Admission {
    /// Bypassing reads may hold at most half of `pool_size` connections.
    pub fn new(pool_size: u32, bypass_wait: Duration) -> Self {
        Admission {
            load_test: Arc::new(Semaphore::new(1)),
            bypass: Arc::new(Semaphore::new(bypass_share(pool_size))),
            bypass_wait,
        }
    }

    /// The load test's slot, or 429 at once when one is running.
    pub fn load_test(&self) -> Result<OwnedSemaphorePermit> {
        self.load_test.clone().try_acquire_owned().map_err(|_| Error::Busy { what: "a load test" })
    }

    /// A slot for one read straight from PostgreSQL; waits up to the pool's acquire timeout, then 429.
    pub async fn bypass(&self) -> Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.bypass_wait, self.bypass.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::Busy { what: "reading without the cache" }),
        }
    }
}

fn bypass_share(pool_size: u32) -> usize {
    (pool_size as usize / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_gets_half_the_pool_and_at_least_one() {
        assert_eq!(bypass_share(10), 5);
        assert_eq!(bypass_share(1), 1);
        assert_eq!(bypass_share(3), 1);
    }

    #[test]
    fn a_second_load_test_is_refused() {
        let a = Admission::new(10, Duration::from_millis(10));
        let first = a.load_test().expect("first");
        assert!(matches!(a.load_test(), Err(Error::Busy { .. })));
        drop(first);
        assert!(a.load_test().is_ok());
    }
}
