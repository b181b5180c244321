//! Invalidations that could not be applied (Redis down, frozen, behind an open breaker, or full under
//! `noeviction`): kept here and retried until Redis takes them. Until then this replica reads those scopes
//! from PostgreSQL, past the cache, so a committed write is never followed by a stale read once Redis answers
//! again. The check on the read path is one atomic load while nothing is pending.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::keys::Scope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Owed {
    Scopes(Vec<Scope>),
    /// Too many to track: every key of this app is removed.
    Everything,
}

pub(super) struct Pending {
    any: AtomicBool,
    inner: Mutex<Inner>,
    /// More distinct scopes than this collapse into "everything": the set stays bounded.
    max_scopes: usize,
}

#[derive(Default)]
struct Inner {
    scopes: HashSet<Scope>,
    everything: bool,
}

impl Pending {
    pub fn new(max_scopes: usize) -> Self {
        Pending { any: AtomicBool::new(false), inner: Mutex::default(), max_scopes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, scopes: &[Scope]) {
        let mut inner = self.lock();
        inner.scopes.extend(scopes.iter().cloned());
        if inner.scopes.len() > self.max_scopes {
            inner.scopes.clear();
            inner.everything = true;
        }
        self.any.store(true, Ordering::Release);
    }

    /// Whether a read of `scope` must skip the cache.
    pub fn covers(&self, scope: &Scope) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let inner = self.lock();
        inner.everything || inner.scopes.contains(scope)
    }

    /// What is owed now, to retry; `None` when nothing is. Scopes owed besides "everything" are part of it and
    /// are dropped here: what is added from now on is owed after it, and stays when it is settled.
    pub fn owed(&self) -> Option<Owed> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut inner = self.lock();
        if inner.everything {
            inner.scopes.clear();
            Some(Owed::Everything)
        } else if inner.scopes.is_empty() {
            None
        } else {
            Some(Owed::Scopes(inner.scopes.iter().cloned().collect()))
        }
    }

    /// After `owed` was applied: forget it (what was added meanwhile stays).
    pub fn settle(&self, owed: &Owed) {
        let mut inner = self.lock();
        match owed {
            Owed::Everything => inner.everything = false,
            Owed::Scopes(scopes) => {
                if !inner.everything {
                    for s in scopes {
                        inner.scopes.remove(s);
                    }
                }
            }
        }
        self.any.store(inner.everything || !inner.scopes.is_empty(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_scopes_are_covered_until_settled() {
        let p = Pending::new(10);
        assert!(!p.covers(&Scope::Catalog));
        p.add(&[Scope::Product(1), Scope::Catalog]);
        assert!(p.covers(&Scope::Product(1)) && p.covers(&Scope::Catalog));
        assert!(!p.covers(&Scope::Product(2)));
        let owed = p.owed().expect("owed");
        p.add(&[Scope::Product(2)]);
        p.settle(&owed);
        assert!(!p.covers(&Scope::Product(1)));
        assert!(p.covers(&Scope::Product(2)), "added after the retry started: still owed");
    }

    #[test]
    fn too_many_scopes_become_everything() {
        let p = Pending::new(10);
        for id in 0..=10 {
            p.add(&[Scope::Product(id)]);
        }
        assert_eq!(p.owed(), Some(Owed::Everything));
        assert!(p.covers(&Scope::Product(-1)));
        let owed = p.owed().expect("owed");
        p.add(&[Scope::Product(7)]);
        p.settle(&owed);
        assert!(p.covers(&Scope::Product(7)), "added while everything was being removed: still owed");
        assert!(!p.covers(&Scope::Product(1)));
        assert_eq!(p.owed(), Some(Owed::Scopes(vec![Scope::Product(7)])));
    }
}
