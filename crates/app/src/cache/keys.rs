//! Every Redis name this app uses is made here, so `redis-cli` users and the code agree on one spelling.
//!
//! Names are `<prefix>:<name>`, with `<prefix>` = `CACHE_PREFIX` (default `cache-demo`):
//! - entries: `cache-demo:categories:stats`, `cache-demo:products:search:laptop:20`,
//!   `cache-demo:products:top:10`, `cache-demo:product:42` ([`CacheKey`], [`Keyspace::full`]);
//! - the generation tokens, one string per [`Scope`] (see `cache`): `cache-demo:generation:catalog`,
//!   `cache-demo:generation:product:42` ([`Keyspace::generation`]);
//! - the stampede lock of an entry: `cache-demo:lock:<name>` ([`Keyspace::lock`]);
//! - the pub/sub channels `cache-demo:invalidations` and `cache-demo:invalidation-acks`, whose messages carry
//!   scopes as [`format_scopes`] writes them;
//! - what replicas share (kept by a flush): the hash `cache-demo:fleet` (each replica's counters, one field
//!   per replica), `cache-demo:fleet:epoch` (changed by every flush), `cache-demo:lab:db-delay-ms` and
//!   `cache-demo:lab:configured-maxmemory` (the dashboard's experiments);
//! - SCAN patterns: every key of this app, and the admin routes' patterns ([`Keyspace::admin_pattern`]).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::endpoint::Endpoint;
use crate::error::{Error, Result};

/// What a cached entry depends on. A write bumps the generation of every scope it touches, which stops
/// in-flight loads of those scopes from storing what they read before the write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Aggregates and lists over all products: stats, searches, top lists.
    Catalog,
    /// One product's own entry.
    Product(i32),
}

impl Scope {
    /// The scope's name: its generation token's key after `<prefix>:generation:`, and its spelling in
    /// invalidation messages.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Scope::Catalog => Cow::Borrowed(CATALOG_SCOPE),
            Scope::Product(id) => Cow::Owned(product_name(*id)),
        }
    }
}

const CATALOG_SCOPE: &str = "catalog";

/// Scope text of an invalidation message meaning "everything" (a flush).
pub const ALL_SCOPES: &str = "*";

/// What an invalidation message tells replicas to drop from their L1.
#[derive(Debug, Clone, Copy)]
pub enum Dropped<'a> {
    /// The entries of these scopes (a write).
    Scopes(&'a [Scope]),
    /// Everything (a flush, an admin delete).
    Everything,
}

impl Dropped<'_> {
    /// The scopes part of the message: `product:42,catalog`, or `*` for everything.
    pub fn wire(self) -> String {
        match self {
            Dropped::Scopes(scopes) => format_scopes(scopes),
            Dropped::Everything => ALL_SCOPES.to_owned(),
        }
    }
}

/// The scopes of an invalidation message: `product:42,catalog`.
pub fn format_scopes(scopes: &[Scope]) -> String {
    scopes.iter().map(Scope::name).collect::<Vec<_>>().join(",")
}

/// The inverse of [`format_scopes`]; unknown parts are skipped.
pub fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split(',')
        .filter_map(|s| match s {
            CATALOG_SCOPE => Some(Scope::Catalog),
            other => other.strip_prefix("product:").and_then(|id| id.parse().ok()).map(Scope::Product),
        })
        .collect()
}

/// A cache key without the app prefix, with the endpoint and scope it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub endpoint: Endpoint,
    pub scope: Scope,
    name: String,
}

/// Search terms up to this length made of plain characters stay readable in the key; others are hashed.
const READABLE_TERM_MAX: usize = 32;

impl CacheKey {
    pub fn categories() -> Self {
        CacheKey { endpoint: Endpoint::Categories, scope: Scope::Catalog, name: "categories:stats".into() }
    }

    /// `term` must already be normalised (see [`normalize_term`]).
    pub fn search(term: &str, limit: u32) -> Self {
        let name = if term.is_empty() {
            format!("products:list:{limit}")
        } else if term.len() <= READABLE_TERM_MAX
            && term.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b' ')
        {
            // Spaces become '+' so the key can be typed in redis-cli without quotes; '+' itself is not readable,
            // so "usb c" and a literal "usb+c" cannot collide.
            format!("products:search:{}:{limit}", term.replace(' ', "+"))
        } else {
            let digest = Sha256::digest(term.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            // '#' never appears in a readable term, so hashed and readable keys cannot collide.
            format!("products:search:#{hex}:{limit}")
        };
        CacheKey { endpoint: Endpoint::Search, scope: Scope::Catalog, name }
    }

    pub fn top_products(limit: u32) -> Self {
        CacheKey { endpoint: Endpoint::TopProducts, scope: Scope::Catalog, name: format!("products:top:{limit}") }
    }

    pub fn product(id: i32) -> Self {
        CacheKey { endpoint: Endpoint::Product, scope: Scope::Product(id), name: product_name(id) }
    }

    /// The key without the prefix, as documented (`categories:stats`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`Scope::name`] of this key's scope, without building it: a product's entry and its scope share the name
    /// `product:<id>`.
    pub fn scope_name(&self) -> &str {
        match self.scope {
            Scope::Catalog => CATALOG_SCOPE,
            Scope::Product(_) => &self.name,
        }
    }
}

/// `product:<id>`, the name of a product's entry and of its scope (built on every request).
fn product_name(id: i32) -> String {
    let mut name = String::with_capacity(20);
    name.push_str("product:");
    name.push_str(itoa::Buffer::new().format(id));
    name
}

/// Lower-case, trimmed, inner whitespace collapsed: "  Noise  Cancelling " and "noise cancelling" share a key.
pub fn normalize_term(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The app's namespace in Redis.
#[derive(Debug, Clone)]
pub struct Keyspace {
    prefix: String,
    /// `<prefix>:generation:`, which a scope's name completes.
    generation_prefix: String,
    catalog_index: String,
    invalidations: String,
    invalidation_acks: String,
    fleet: String,
    fleet_epoch: String,
    lab_db_delay: String,
    lab_maxmemory: String,
}

/// Longest admin pattern accepted (after the prefix).
const MAX_PATTERN_CHARS: usize = 128;

impl Keyspace {
    pub fn new(prefix: &str) -> Self {
        Keyspace {
            prefix: prefix.to_owned(),
            generation_prefix: format!("{prefix}:generation:"),
            catalog_index: format!("{prefix}:catalog-index"),
            invalidations: format!("{prefix}:invalidations"),
            invalidation_acks: format!("{prefix}:invalidation-acks"),
            fleet: format!("{prefix}:fleet"),
            fleet_epoch: format!("{prefix}:fleet:epoch"),
            lab_db_delay: format!("{prefix}:lab:db-delay-ms"),
            lab_maxmemory: format!("{prefix}:lab:configured-maxmemory"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn full(&self, key: &CacheKey) -> String {
        let mut full = String::with_capacity(self.prefix.len() + 1 + key.name.len());
        full.push_str(&self.prefix);
        full.push(':');
        full.push_str(&key.name);
        full
    }

    /// The key holding the current generation token of the scope named `scope` ([`Scope::name`]).
    pub fn generation(&self, scope: &str) -> String {
        let mut key = String::with_capacity(self.generation_prefix.len() + scope.len());
        key.push_str(&self.generation_prefix);
        key.push_str(scope);
        key
    }

    /// SCAN pattern of every generation token.
    pub fn generation_pattern(&self) -> String {
        format!("{}*", self.generation_prefix)
    }

    /// The sorted set of catalogue entries (lists, searches, stats) scored by expiry: what a write removes,
    /// found without a SCAN of the keyspace.
    pub fn catalog_index(&self) -> &str {
        &self.catalog_index
    }

    /// The stampede lock of an entry, held by the replica loading it.
    pub fn lock(&self, key: &CacheKey) -> String {
        format!("{}:lock:{}", self.prefix, key.name)
    }

    /// The pub/sub channel of invalidations, and the one of their acknowledgements.
    pub fn invalidation_channels(&self) -> (&str, &str) {
        (&self.invalidations, &self.invalidation_acks)
    }

    /// SCAN pattern matching every key of this app and nothing else (the prefix has no glob characters).
    /// Each replica's published counters, one field per replica.
    pub fn fleet(&self) -> &str {
        &self.fleet
    }

    /// A random token that every flush replaces: replicas reset their counters when it changes.
    pub fn fleet_epoch(&self) -> &str {
        &self.fleet_epoch
    }

    /// The artificial database delay the dashboard set, for every replica.
    pub fn lab_db_delay(&self) -> &str {
        &self.lab_db_delay
    }

    /// Redis's `maxmemory` before the eviction experiment shrank it.
    pub fn lab_maxmemory(&self) -> &str {
        &self.lab_maxmemory
    }

    /// Whether a key holds state the replicas share rather than a cached value: a flush keeps it, and the key
    /// count leaves it out. The invalidation's bookkeeping is such state: a token outlives the entries it covers
    /// (a miss after a flush still finds its token in one round trip), and the catalogue index must outlive any
    /// removal by `SCAN`, which cannot see an entry stored while it runs: only the index tells a later write
    /// where that entry is.
    pub fn is_shared_state(&self, full_key: &str) -> bool {
        full_key.starts_with(&self.generation_prefix)
            || full_key == self.catalog_index
            || full_key == self.fleet
            || full_key == self.fleet_epoch
            || full_key == self.lab_db_delay
            || full_key == self.lab_maxmemory
    }

    pub fn all_pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    /// Whether a full key (as SCAN returns it) belongs to this app.
    pub fn owns(&self, full_key: &str) -> bool {
        full_key.strip_prefix(&self.prefix).is_some_and(|rest| rest.starts_with(':'))
    }

    /// A pattern relative to the prefix (`product:*`), turned into the full SCAN pattern
    /// (`cache-demo:product:*`). The prefix is literal (no glob characters, checked at start-up), so the
    /// result only matches keys under it.
    pub fn admin_pattern(&self, pattern: &str) -> Result<String> {
        let p = self.short(pattern);
        if p.is_empty() {
            return Err(Error::bad_request("pattern must not be empty (use * for every key of this app)"));
        }
        if p.chars().count() > MAX_PATTERN_CHARS {
            return Err(Error::bad_request(format!("pattern must be at most {MAX_PATTERN_CHARS} characters")));
        }
        if p.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::bad_request("pattern must not contain spaces or control characters"));
        }
        Ok(format!("{}:{p}", self.prefix))
    }

    /// Strips the prefix for display (`cache-demo:product:1` → `product:1`).
    pub fn short<'a>(&self, full_key: &'a str) -> &'a str {
        full_key.strip_prefix(&self.prefix).and_then(|r| r.strip_prefix(':')).unwrap_or(full_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_key_names() {
        let ks = Keyspace::new("cache-demo");
        assert_eq!(ks.full(&CacheKey::categories()), "cache-demo:categories:stats");
        assert_eq!(ks.full(&CacheKey::search("laptop", 20)), "cache-demo:products:search:laptop:20");
        assert_eq!(ks.full(&CacheKey::top_products(10)), "cache-demo:products:top:10");
        assert_eq!(ks.full(&CacheKey::product(1)), "cache-demo:product:1");
        assert_eq!(ks.generation(CacheKey::product(1).scope_name()), "cache-demo:generation:product:1");
        assert_eq!(ks.generation(CacheKey::categories().scope_name()), "cache-demo:generation:catalog");
        assert_eq!(ks.generation_pattern(), "cache-demo:generation:*");
        assert_eq!(ks.fleet(), "cache-demo:fleet");
        assert_eq!(ks.lab_maxmemory(), "cache-demo:lab:configured-maxmemory");
    }

    #[test]
    fn shared_state_is_told_from_entries() {
        let ks = Keyspace::new("cache-demo");
        let token = ks.generation("product:1");
        let shared = [token.as_str(), ks.catalog_index(), ks.fleet(), ks.fleet_epoch(), ks.lab_db_delay()];
        for shared in shared.into_iter().chain([ks.lab_maxmemory()]) {
            assert!(ks.is_shared_state(shared), "{shared}");
        }
        assert!(!ks.is_shared_state("cache-demo:product:1"));
        assert!(!ks.is_shared_state("cache-demo:categories:stats"));
        assert!(!ks.is_shared_state("cache-demo:fleet:other"));
        assert!(!ks.is_shared_state("cache-demo:generations"), "an ordinary key");
    }

    #[test]
    fn search_terms_are_normalised_before_keying() {
        let a = CacheKey::search(&normalize_term("  Noise   CANCELLING "), 20);
        let b = CacheKey::search(&normalize_term("noise cancelling"), 20);
        assert_eq!(a, b);
        assert_eq!(a.name(), "products:search:noise+cancelling:20");
    }

    #[test]
    fn odd_or_long_terms_are_hashed_and_distinct() {
        let quoted = CacheKey::search("chef's knife", 20);
        assert!(quoted.name().starts_with("products:search:#"), "{}", quoted.name());
        let long = "a".repeat(READABLE_TERM_MAX + 1);
        let hashed = CacheKey::search(&long, 20);
        assert!(hashed.name().starts_with("products:search:#"));
        assert_ne!(hashed, CacheKey::search(&"a".repeat(READABLE_TERM_MAX + 2), 20));
        assert!(!hashed.name().contains('*'));
        // A literal plus sign must not collide with a space.
        assert_ne!(CacheKey::search("usb c", 20), CacheKey::search("usb+c", 20));
    }

    #[test]
    fn empty_term_lists_products() {
        assert_eq!(CacheKey::search("", 5).name(), "products:list:5");
    }

    #[test]
    fn patterns_stay_inside_the_prefix() {
        let ks = Keyspace::new("cache-demo");
        assert_eq!(ks.admin_pattern("product:*").ok().as_deref(), Some("cache-demo:product:*"));
        assert_eq!(ks.admin_pattern("cache-demo:product:*").ok().as_deref(), Some("cache-demo:product:*"));
        assert_eq!(ks.admin_pattern("*").ok().as_deref(), Some("cache-demo:*"));
        // Whatever follows, the literal prefix comes first: `*` cannot match other apps' keys.
        assert_eq!(ks.admin_pattern("*:other").ok().as_deref(), Some("cache-demo:*:other"));
        assert!(ks.admin_pattern("").is_err());
        assert!(ks.admin_pattern("a b").is_err());
        assert!(ks.admin_pattern(&"x".repeat(200)).is_err());
    }

    #[test]
    fn other_names_of_the_keyspace() {
        let ks = Keyspace::new("cache-demo");
        assert_eq!(ks.lock(&CacheKey::product(3)), "cache-demo:lock:product:3");
        assert_eq!(ks.invalidation_channels(), ("cache-demo:invalidations", "cache-demo:invalidation-acks"));
        assert_eq!(ks.all_pattern(), "cache-demo:*");
        assert!(ks.owns("cache-demo:product:1"));
        assert!(!ks.owns("cache-demox:product:1"));
    }

    #[test]
    fn scopes_round_trip_through_messages() {
        let scopes = vec![Scope::Product(42), Scope::Catalog];
        assert_eq!(format_scopes(&scopes), "product:42,catalog");
        assert_eq!(parse_scopes("product:42,catalog"), scopes);
        assert_eq!(parse_scopes("product:x,bogus,catalog"), vec![Scope::Catalog]);
        assert_eq!(Dropped::Scopes(&scopes).wire(), "product:42,catalog");
        assert_eq!(Dropped::Everything.wire(), ALL_SCOPES);
    }

    #[test]
    fn scope_names() {
        assert_eq!(CacheKey::product(7).scope.name(), "product:7");
        assert_eq!(CacheKey::categories().scope.name(), "catalog");
        for key in [CacheKey::product(7), CacheKey::categories(), CacheKey::top_products(5)] {
            assert_eq!(key.scope_name(), key.scope.name());
        }
    }
}
