//! TTL jitter: entries written together should not all expire in the same second.

use std::time::Duration;

/// `ttl` spread by `unit` ∈ [-1, 1] times `pct` percent, never below one second.
pub fn jittered(ttl: Duration, pct: u8, unit: f64) -> Duration {
    let factor = 1.0 + f64::from(pct) / 100.0 * unit.clamp(-1.0, 1.0);
    Duration::from_secs_f64((ttl.as_secs_f64() * factor).max(1.0))
}

/// A jittered TTL with a random spread.
pub fn random_jitter(ttl: Duration, pct: u8) -> Duration {
    if pct == 0 {
        return ttl;
    }
    jittered(ttl, pct, rand::random::<f64>() * 2.0 - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_percentage() {
        let ttl = Duration::from_secs(60);
        assert_eq!(jittered(ttl, 10, -1.0), Duration::from_secs(54));
        assert_eq!(jittered(ttl, 10, 1.0), Duration::from_secs(66));
        assert_eq!(jittered(ttl, 10, 0.0), ttl);
        assert_eq!(jittered(ttl, 0, 1.0), ttl);
        assert_eq!(jittered(Duration::from_secs(1), 50, -1.0), Duration::from_secs(1), "never below a second");
    }

    #[test]
    fn random_jitter_spreads_values() {
        let ttl = Duration::from_secs(60);
        let samples: Vec<Duration> = (0..500).map(|_| random_jitter(ttl, 10)).collect();
        assert!(samples.iter().all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        let distinct: std::collections::HashSet<u128> = samples.iter().map(Duration::as_millis).collect();
        assert!(distinct.len() > 100, "spread, not constant: {} distinct", distinct.len());
        assert_eq!(random_jitter(ttl, 0), ttl);
    }
}
