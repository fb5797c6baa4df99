//! The read path, top to bottom: memory, disk, in-flight map, compute,
//! store. [`Memo::get_or_compute`] returns the value with how it was found
//! ([`CacheStatus`], exposed over HTTP as `X-Cache`).
//!
//! Every cached endpoint goes through here. The computation belongs to a
//! spawned task (see [`crate::coalesce`]), so a caller that gives up (drop,
//! timeout) never fails the others; when every caller has given up, the
//! computation is cancelled and nothing is stored.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    coalesce::{Inflight, Join},
    error::{Error, Result},
    store::{Entry, Key, Store, Tier},
};

pub use crate::coalesce::Policy;

/// How a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Found in a tier.
    Hit(Tier),
    /// Answered by a computation another caller started.
    Coalesced,
    /// This caller's request caused the computation.
    Miss,
}

impl CacheStatus {
    /// The `X-Cache` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit(_) => "hit",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Miss => "miss",
        }
    }
}

/// Per-call options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookup {
    pub policy: Policy,
    /// This caller's own deadline; others are not affected by it.
    pub timeout: Option<Duration>,
    /// Lifetime of a stored result; `None` keeps it until evicted.
    pub ttl: Option<Duration>,
}

/// The memoizer: a [`Store`] plus the in-flight map. Cheap to clone.
#[derive(Clone)]
pub struct Memo {
    store: Store,
    inflight: Arc<Inflight>,
}

impl Memo {
    pub fn new(store: Store) -> Memo {
        let inflight = Inflight::new(store.metrics().in_flight.clone());
        Memo { store, inflight }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Computations in flight or landed but not yet durable; zero when idle.
    pub fn pending(&self) -> usize {
        self.inflight.len()
    }

    /// The value under `key`, computing it with `compute` if no tier has it
    /// and nobody is computing it already. `compute` runs at most once per
    /// key at a time, in its own task; its error reaches every waiter and
    /// is not stored (a plain `String` error becomes [`Error::Compute`]);
    /// a panic becomes an error.
    pub async fn get_or_compute<F, Fut, V, E>(
        &self,
        key: Key,
        lookup: Lookup,
        compute: F,
    ) -> Result<(Entry, CacheStatus)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        V: Into<Bytes>,
        E: Into<Error>,
    {
        let metrics = self.store.metrics();
        let mut compute = Some(compute);
        if lookup.policy.read {
            // The hit path: one memory lookup, nothing else.
            if let Some(entry) = self.store.get_memory(&key) {
                return Ok((entry, CacheStatus::Hit(Tier::Memory)));
            }
        }
        loop {
            // Read before looking (again): see `Store::fence`.
            let fence = self.store.fence(&key);
            if lookup.policy.read {
                if let Some((entry, tier)) = self.store.get(&key).await? {
                    return Ok((entry, CacheStatus::Hit(tier)));
                }
            }
            let joined = self.inflight.join(
                &self.store,
                &key,
                lookup.policy,
                lookup.ttl,
                || lookup.policy.read && self.store.fence(&key) != fence,
                || {
                    let work = compute.take().expect("compute is taken once")();
                    async move { work.await.map(Into::into).map_err(Into::into) }
                },
            );
            let (waiter, status) = match joined {
                Join::LookAgain => continue,
                Join::Landed(entry) => {
                    metrics.coalesced();
                    return Ok((entry, CacheStatus::Coalesced));
                }
                Join::Led(waiter) => {
                    metrics.miss();
                    (waiter, CacheStatus::Miss)
                }
                Join::Followed(waiter) => {
                    metrics.coalesced();
                    (waiter, CacheStatus::Coalesced)
                }
            };
            return waiter.wait(lookup.timeout).await.map(|e| (e, status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    /// A result that landed just before its model's cache was dropped, and
    /// whose flight has not cleared its slot yet, is not handed out.
    #[tokio::test]
    async fn a_drop_wins_over_a_landed_flight() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let memo = Memo::new(Store::open(options).await.unwrap());
        let store = memo.store().clone();
        let key = Key::new(5, "k");
        let (landed, release) = memo.inflight.landed.arm();
        let old = memo.get_or_compute(key.clone(), Lookup::default(), || async {
            Ok::<_, String>("old")
        });
        let (first, _) = old.await.unwrap();
        assert_eq!(first.value, "old");
        landed.await.unwrap();
        store.drop_namespace(5).await.unwrap();
        let (after, status) = memo
            .get_or_compute(key.clone(), Lookup::default(), || async {
                Ok::<_, String>("new")
            })
            .await
            .unwrap();
        assert_eq!((&after.value[..], status), (&b"new"[..], CacheStatus::Miss));
        release.send(()).unwrap();
        while memo.pending() > 0 {
            tokio::task::yield_now().await;
        }
        let (stored, _) = store.get(&key).await.unwrap().unwrap();
        assert_eq!(stored.value, "new");
        store.close().await;
    }
}
