//! What a cache lookup produced: the [`Outcome`] (with the level that answered a hit) and the bytes.

use std::time::Duration;

use bytes::Bytes;

/// Where a response came from; drives the `X-Cache` and `X-Cache-Level` headers, `source` in the body, the
/// metrics label and the dashboard's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by a cache, at this level.
    Hit(Level),
    Miss,
    /// `?cache=off`: PostgreSQL only, nothing stored.
    Bypass,
    /// Redis failed or timed out; answered from PostgreSQL.
    Error,
}

/// Which cache answered a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The in-process cache.
    L1,
    /// Redis.
    L2,
}

impl Outcome {
    pub const COUNT: usize = 5;

    /// Every outcome a response can report, each at its [`index`](Self::index).
    pub const ALL: [Outcome; Self::COUNT] =
        [Outcome::Hit(Level::L1), Outcome::Hit(Level::L2), Outcome::Miss, Outcome::Bypass, Outcome::Error];

    /// Where this outcome stands in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        match self {
            Outcome::Hit(Level::L1) => 0,
            Outcome::Hit(Level::L2) => 1,
            Outcome::Miss => 2,
            Outcome::Bypass => 3,
            Outcome::Error => 4,
        }
    }

    /// The `result` label of `cache_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit(_) => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
            Outcome::Error => "error",
        }
    }

    /// `X-Cache` value. A Redis failure is reported as a miss (the cache did not answer) plus `X-Cache-Error`.
    pub fn header(self) -> &'static str {
        match self {
            Outcome::Hit(_) => "HIT",
            Outcome::Miss | Outcome::Error => "MISS",
            Outcome::Bypass => "BYPASS",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Outcome::Hit(_) => "cache",
            _ => "database",
        }
    }

    pub fn level(self) -> Option<Level> {
        match self {
            Outcome::Hit(level) => Some(level),
            _ => None,
        }
    }
}

/// What a response's `X-Cache` header told the client, read back for the request's records: its value and the
/// `source` it stands for. The level of a hit, and whether Redis failed behind a `MISS`, are not in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub header: &'static str,
    pub source: &'static str,
}

impl Reported {
    pub fn from_header(value: &[u8]) -> Option<Reported> {
        [Outcome::Hit(Level::L2), Outcome::Miss, Outcome::Bypass]
            .into_iter()
            .find(|o| o.header().as_bytes() == value)
            .map(|o| Reported { header: o.header(), source: o.source() })
    }
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
        }
    }
}

/// A cacheable response: the JSON bytes of the payload exactly as stored in Redis, and how they were obtained.
#[derive(Debug, Clone)]
pub struct Cached {
    pub data: Bytes,
    pub outcome: Outcome,
    pub redis_time: Option<Duration>,
    pub db_time: Option<Duration>,
}

/// What priming a key did.
#[derive(Debug, Clone)]
pub enum Primed {
    /// The key was in Redis already (its value is returned).
    AlreadyCached(Bytes),
    /// Loaded from PostgreSQL and stored.
    Stored(Bytes),
    /// Loaded, but not stored (Redis unavailable, or a write changed the data meanwhile).
    NotStored(Bytes),
}

impl Primed {
    pub fn data(&self) -> &Bytes {
        match self {
            Primed::AlreadyCached(b) | Primed::Stored(b) | Primed::NotStored(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_headers_sources_and_labels() {
        assert_eq!(Outcome::Hit(Level::L2).header(), "HIT");
        assert_eq!(Outcome::Hit(Level::L1).source(), "cache");
        assert_eq!(Outcome::Miss.source(), "database");
        assert_eq!(Outcome::Bypass.header(), "BYPASS");
        assert_eq!(Outcome::Error.label(), "error");
        assert_eq!(Outcome::Error.header(), "MISS");
        assert_eq!(Outcome::Hit(Level::L1).level(), Some(Level::L1));
        assert_eq!(Outcome::Miss.level(), None);
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i, "{outcome:?}");
        }
    }
}
