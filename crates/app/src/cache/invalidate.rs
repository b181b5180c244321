//! Invalidation after writes, and the flush: new generation tokens for what changed, then the entries removed
//! from Redis, from this replica's L1, and (through the bus) from every other replica's L1.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::bus::Announced;
use super::connection::Command;
use super::keys::{CacheKey, Dropped, Scope};
use super::pending::Owed;
use super::scripts::Token;
use super::{Cache, CacheError};

/// Keys shown in a write's response; the count is always exact.
const MAX_KEYS_LISTED: usize = 50;
/// How often invalidations Redis did not take are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Keys a write removed, for the response and the logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Invalidation {
    pub count: usize,
    pub keys: Vec<String>,
    /// False when Redis could not be reached: the invalidation is retried until Redis takes it, and until then
    /// this replica reads the scopes it covers past the cache.
    pub complete: bool,
    /// Replicas told to drop the entries from their L1, and how many confirmed; absent when the message
    /// could not be published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Announced>,
}

/// Why keys were removed: the `reason` label of `cache_invalidated_keys_total`.
#[derive(Debug, Clone, Copy)]
enum Reason {
    Write,
    Flush,
    Admin,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Write => "write",
            Reason::Flush => "flush",
            Reason::Admin => "admin",
        }
    }
}

impl Cache {
    /// After a committed write: new generations for `scopes`, then remove the entries they cover
    /// (the product's own key, and with [`Scope::Catalog`] every list and aggregate of this app).
    pub async fn invalidate(&self, scopes: &[Scope]) -> Invalidation {
        // This replica first, synchronously; the others through the bus below.
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate(scopes);
        }
        self.inner.flights.forget_untokened();
        let mut result = self.bump(scopes).await;
        result.keys.truncate(MAX_KEYS_LISTED);
        if result.complete {
            result.replicas = self.inner.bus.announce(Dropped::Scopes(scopes)).await.ok();
        } else {
            // Kept and retried; until then this replica reads these scopes past the cache.
            self.inner.pending.add(scopes);
            tracing::warn!(
                "cache invalidation not applied: Redis unavailable; retrying, reads skip the cache meanwhile"
            );
        }
        self.count_removed(Reason::Write, result.count);
        result
    }

    /// Whether a read of `scope` must skip the cache: an invalidation of it is still owed.
    pub(super) fn invalidation_owed(&self, scope: &Scope) -> bool {
        self.inner.pending.covers(scope)
    }

    /// Retries owed invalidations until `shutdown`.
    pub(super) async fn retry_pending(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY_EVERY) => {}
            }
            let Some(owed) = self.inner.pending.owed() else { continue };
            let applied = match &owed {
                Owed::Scopes(scopes) => {
                    let result = self.bump(scopes).await;
                    if result.complete {
                        let _ = self.inner.bus.announce(Dropped::Scopes(scopes)).await;
                        self.count_removed(Reason::Write, result.count);
                    }
                    result.complete
                }
                Owed::Everything => match self.unlink_everything().await {
                    Ok(removed) => {
                        self.forget_everywhere(Reason::Write, removed.len()).await;
                        true
                    }
                    Err(_) => false,
                },
            };
            if applied {
                self.inner.pending.settle(&owed);
                tracing::info!("owed cache invalidation applied");
            }
        }
    }

    /// New tokens for `scopes` and their entries removed, in one script.
    async fn bump(&self, scopes: &[Scope]) -> Invalidation {
        let ks = &self.inner.keyspace;
        let products: Vec<CacheKey> = scopes
            .iter()
            .filter_map(|s| match s {
                Scope::Product(id) => Some(CacheKey::product(*id)),
                Scope::Catalog => None,
            })
            .collect();
        let direct: Vec<String> = products.iter().map(|k| ks.full(k)).collect();
        let tokens: Vec<_> = scopes.iter().map(|s| (ks.generation(&s.name()), Token::new())).collect();
        let catalog = if scopes.contains(&Scope::Catalog) { "1" } else { "0" };
        let index = ks.catalog_index();
        let script = &self.inner.bump;
        // Catalogue entries come from the index in the same script as the token change: every entry stored
        // before it is listed (a fill lists its entry atomically), and none can be stored after it.
        let bumped: Result<(i64, Vec<String>), _> = self
            .inner
            .redis
            .run(Command::Invalidate, |mut conn| async move {
                let mut inv = script.key(index);
                for (token_key, _) in &tokens {
                    inv.key(token_key);
                }
                for k in &direct {
                    inv.key(k);
                }
                inv.arg(catalog);
                for (_, token) in &tokens {
                    inv.arg(token.as_str());
                }
                inv.invoke_async(&mut conn).await
            })
            .await;
        let mut result = Invalidation { complete: bumped.is_ok(), ..Default::default() };
        if let Ok((n, removed)) = bumped {
            result.count += n as usize + removed.len();
            result.keys.extend(products.iter().map(|k| k.name().to_owned()).take(n as usize));
            result.keys.extend(removed.iter().map(|k| ks.short(k).to_owned()));
        }
        result
    }

    /// Removes every cached key of this app (SCAN + UNLINK by prefix, never KEYS or FLUSHALL) and resets the
    /// counters. What the replicas share (their counters, the experiments' settings, the generation tokens and
    /// the catalogue index) stays.
    pub async fn flush(&self) -> Result<usize, CacheError> {
        let keyspace = &self.inner.keyspace;
        let removed = self.unlink_matching(|k| !keyspace.is_shared_state(k)).await?;
        self.inner.stats.reset();
        self.forget_everywhere(Reason::Flush, removed.len()).await;
        Ok(removed.len())
    }

    /// Removes keys matching a full SCAN pattern (admin), then tells every replica to empty its L1.
    pub async fn unlink_pattern(&self, pattern: &str) -> Result<usize, CacheError> {
        let (keys, _) = self.scan_matching(pattern, usize::MAX).await?;
        let keys = self.unlink_scanned(keys).await?;
        self.forget_everywhere(Reason::Admin, keys.len()).await;
        Ok(keys.len())
    }

    /// After keys were removed without scopes: every replica's L1 emptied, the removal counted.
    async fn forget_everywhere(&self, reason: Reason, removed: usize) {
        if let Some(l1) = &self.inner.l1 {
            l1.clear();
        }
        self.inner.flights.forget_finished();
        let _ = self.inner.bus.announce(Dropped::Everything).await;
        self.count_removed(reason, removed);
    }

    fn count_removed(&self, reason: Reason, n: usize) {
        self.inner.metrics.invalidated_keys.with_label_values(&[reason.label()]).inc_by(n as u64);
    }

    /// What a write owes when its scopes are not known: every token first, so that no load that started before
    /// can store once its token is gone (a token created since was created after the write); then every cached
    /// entry, in a second `SCAN` that starts after the first has ended. A load that stored before its token went
    /// stored before that second `SCAN` began, so the second one finds its entry and removes it. What the
    /// replicas share besides the tokens (their counters, the experiments' settings) stays. Returns the entries
    /// removed.
    async fn unlink_everything(&self) -> Result<Vec<String>, CacheError> {
        let (tokens, _) = self.scan_matching(&self.inner.keyspace.generation_pattern(), usize::MAX).await?;
        self.unlink_scanned(tokens).await?;
        let keyspace = &self.inner.keyspace;
        self.unlink_matching(|k| !keyspace.is_shared_state(k)).await
    }

    async fn unlink_matching(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, CacheError> {
        let keys: Vec<String> = self.scan_keys().await?.into_iter().filter(|k| keep(k)).collect();
        self.unlink_scanned(keys).await
    }

    /// Every removal of keys found by `SCAN` goes through here, and never removes the catalogue index: a `SCAN`
    /// cannot see an entry stored while it runs, and only the index tells a later write where that entry is.
    async fn unlink_scanned(&self, mut keys: Vec<String>) -> Result<Vec<String>, CacheError> {
        keys.retain(|k| k != self.inner.keyspace.catalog_index());
        self.unlink(&keys).await?;
        Ok(keys)
    }
}
