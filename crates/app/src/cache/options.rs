//! How the cache behaves: every pattern has its switch here, set from the configuration.

use std::time::Duration;

use super::endpoint::ByEndpoint;

#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// TTL of each endpoint's entries (before jitter).
    pub ttls: ByEndpoint<Duration>,
    pub ttl_jitter_pct: u8,
    pub single_flight: bool,
    pub single_flight_wait: Duration,
    pub stampede_lock: bool,
    pub stampede_lock_ttl: Duration,
    /// `Some` turns the L1 on.
    pub l1: Option<L1Options>,
    pub invalidation_ack_timeout: Duration,
    /// Distinct scopes an unapplied invalidation may owe before it owes everything (`pending`).
    pub max_owed_scopes: usize,
}

/// The in-process L1's size and entry lifetime.
#[derive(Debug, Clone, Copy)]
pub struct L1Options {
    pub max_entries: u64,
    pub ttl: Duration,
}
