//! What the workers send: which endpoint, through the cache or not, which keys (uniform, Zipf, in order),
//! and how many writes among the reads.

use std::fmt;

use clap::ValueEnum;
use rand::Rng;
use rand_distr::{Distribution as _, Zipf};
use serde::Serialize;

/// Products seeded by `init.sql`: ids 1..=500.
pub const SEEDED_PRODUCTS: u64 = 500;

/// Search terms that match products of the seeded catalogue.
pub const SEARCH_TERMS: &[&str] = &["laptop", "headphones", "coffee", "yoga", "knife", "tent", "jacket", "puzzle"];

/// Limits the bench uses, so every run of an endpoint reads the same cache key(s).
pub const SEARCH_LIMIT: u32 = 20;
pub const TOP_LIMIT: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /api/products/{id}`: one product with its review summary (a primary-key lookup and a small join).
    Product,
    /// `GET /api/categories`: an aggregate over every product and review.
    Categories,
    /// `GET /api/products?q=TERM&limit=20`: an `ILIKE` search.
    Search,
    /// `GET /api/top-products?limit=10`: window functions over the reviews.
    Top,
    /// `GET /healthz`: a tiny static response, the HTTP ceiling of the machine.
    Healthz,
}

impl Endpoint {
    /// How the endpoint is shown in tables.
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Product => "GET /api/products/{id}",
            Endpoint::Categories => "GET /api/categories",
            Endpoint::Search => "GET /api/products?q=",
            Endpoint::Top => "GET /api/top-products",
            Endpoint::Healthz => "GET /healthz",
        }
    }

    /// False for `/healthz`, which never touches the cache.
    pub fn cacheable(self) -> bool {
        self != Endpoint::Healthz
    }

    /// Distinct keys the endpoint reads from: product ids, search terms, or one.
    pub fn key_count(self, keys: u64) -> u64 {
        match self {
            Endpoint::Product => keys,
            Endpoint::Search => SEARCH_TERMS.len() as u64,
            Endpoint::Categories | Endpoint::Top | Endpoint::Healthz => 1,
        }
    }

    /// The request path for key number `key` (1-based).
    pub fn path(self, key: u64, cache: CacheMode) -> String {
        let off = cache == CacheMode::Off;
        match self {
            Endpoint::Product => format!("/api/products/{key}{}", if off { "?cache=off" } else { "" }),
            Endpoint::Categories => format!("/api/categories{}", if off { "?cache=off" } else { "" }),
            Endpoint::Search => {
                let term = SEARCH_TERMS[((key.max(1) - 1) as usize) % SEARCH_TERMS.len()];
                format!("/api/products?q={term}&limit={SEARCH_LIMIT}{}", if off { "&cache=off" } else { "" })
            }
            Endpoint::Top => format!("/api/top-products?limit={TOP_LIMIT}{}", if off { "&cache=off" } else { "" }),
            Endpoint::Healthz => "/healthz".to_owned(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.route())
    }
}

/// Through the cache, or `?cache=off` (PostgreSQL only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    On,
    Off,
}

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Key k with probability proportional to 1/k^s: a few hot keys and a long tail, like real traffic.
    Zipf,
    /// 1, 2, ..., N, 1, 2, ... across all workers (each key once per round).
    Sequential,
}

/// Draws keys 1..=n.
#[derive(Debug, Clone)]
pub enum KeySampler {
    Uniform(u64),
    Zipf(Zipf<f64>),
    Sequential(u64),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid key distribution: {0}")]
pub struct SamplerError(String);

impl KeySampler {
    pub fn new(dist: Distribution, n: u64, exponent: f64) -> Result<KeySampler, SamplerError> {
        if n == 0 {
            return Err(SamplerError("need at least one key".into()));
        }
        Ok(match dist {
            Distribution::Uniform => KeySampler::Uniform(n),
            Distribution::Sequential => KeySampler::Sequential(n),
            Distribution::Zipf => {
                if !(exponent.is_finite() && exponent >= 0.0) {
                    return Err(SamplerError(format!("Zipf exponent must be >= 0, got {exponent}")));
                }
                KeySampler::Zipf(Zipf::new(n as f64, exponent).map_err(|e| SamplerError(e.to_string()))?)
            }
        })
    }

    /// A key in 1..=n; `seq` is the request's number across all workers (used by `Sequential`).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, seq: u64) -> u64 {
        match self {
            KeySampler::Uniform(n) => rng.random_range(1..=*n),
            KeySampler::Sequential(n) => seq % n + 1,
            KeySampler::Zipf(z) => z.sample(rng) as u64,
        }
    }
}

/// One read or one write, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Read(String),
    /// `PUT /api/products/{id}` with `{"stock": n}`: invalidates the product and every list and aggregate.
    Write {
        path: String,
        body: String,
    },
}

/// Everything a worker needs to pick its next request.
#[derive(Debug, Clone)]
pub struct Workload {
    pub endpoint: Endpoint,
    pub cache: CacheMode,
    pub sampler: KeySampler,
    /// Writes choose product ids from this one (the hot products are also the ones written to).
    pub write_sampler: KeySampler,
    pub write_ratio: f64,
}

impl Workload {
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R, seq: u64) -> Op {
        if self.write_ratio > 0.0 && rng.random_bool(self.write_ratio.min(1.0)) {
            let id = self.write_sampler.sample(rng, seq);
            let stock: u32 = rng.random_range(0..1000);
            return Op::Write { path: format!("/api/products/{id}"), body: format!(r#"{{"stock":{stock}}}"#) };
        }
        Op::Read(self.endpoint.path(self.sampler.sample(rng, seq), self.cache))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn zipf_keys_stay_in_range_and_favour_the_first() {
        let s = KeySampler::new(Distribution::Zipf, 500, 1.0).expect("valid");
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u32; 501];
        for i in 0..100_000 {
            let k = s.sample(&mut rng, i);
            assert!((1..=500).contains(&k), "key {k} out of range");
            counts[k as usize] += 1;
        }
        // With s = 1 over 500 keys, key 1 has probability 1/H(500) ≈ 0.147 and key 500 about 0.0003.
        assert!((13_000..16_500).contains(&counts[1]), "key 1 drawn {} times", counts[1]);
        assert!(counts[1] > counts[2] && counts[2] > counts[10] && counts[10] > counts[400]);
    }

    #[test]
    fn uniform_and_sequential_keys_stay_in_range() {
        let mut rng = SmallRng::seed_from_u64(1);
        let u = KeySampler::new(Distribution::Uniform, 3, 0.0).expect("valid");
        let drawn: Vec<u64> = (0..1000).map(|i| u.sample(&mut rng, i)).collect();
        assert!(drawn.iter().all(|k| (1..=3).contains(k)));
        assert!([1, 2, 3].iter().all(|k| drawn.contains(k)));
        let s = KeySampler::new(Distribution::Sequential, 3, 0.0).expect("valid");
        let seq: Vec<u64> = (0..7).map(|i| s.sample(&mut rng, i)).collect();
        assert_eq!(seq, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn bad_distributions_are_rejected() {
        assert!(KeySampler::new(Distribution::Zipf, 0, 1.0).is_err());
        assert!(KeySampler::new(Distribution::Zipf, 10, -1.0).is_err());
        assert!(KeySampler::new(Distribution::Zipf, 10, f64::NAN).is_err());
    }

    #[test]
    fn paths_bypass_the_cache_when_asked() {
        assert_eq!(Endpoint::Product.path(7, CacheMode::On), "/api/products/7");
        assert_eq!(Endpoint::Product.path(7, CacheMode::Off), "/api/products/7?cache=off");
        assert_eq!(Endpoint::Search.path(1, CacheMode::Off), "/api/products?q=laptop&limit=20&cache=off");
        assert_eq!(Endpoint::Search.path(9, CacheMode::On), "/api/products?q=laptop&limit=20");
        assert_eq!(Endpoint::Top.path(1, CacheMode::Off), "/api/top-products?limit=10&cache=off");
        assert_eq!(Endpoint::Categories.path(1, CacheMode::On), "/api/categories");
        assert_eq!(Endpoint::Healthz.path(1, CacheMode::Off), "/healthz");
    }

    #[test]
    fn writes_follow_the_ratio() {
        let w = Workload {
            endpoint: Endpoint::Product,
            cache: CacheMode::On,
            sampler: KeySampler::new(Distribution::Uniform, 500, 0.0).expect("valid"),
            write_sampler: KeySampler::new(Distribution::Uniform, 500, 0.0).expect("valid"),
            write_ratio: 0.1,
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let ops: Vec<Op> = (0..10_000).map(|i| w.next(&mut rng, i)).collect();
        let writes = ops.iter().filter(|o| matches!(o, Op::Write { .. })).count();
        assert!((800..1200).contains(&writes), "{writes} writes in 10,000");
        let Some(Op::Write { path, body }) = ops.iter().find(|o| matches!(o, Op::Write { .. })) else {
            panic!("no write")
        };
        assert!(path.starts_with("/api/products/"));
        let v: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert!(v["stock"].as_u64().is_some());
    }
}
