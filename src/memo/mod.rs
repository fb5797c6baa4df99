//! The read path, top to bottom: memory, the tiers behind it, the in-flight
//! map, compute, write-back. [`Memo::get_or_compute`] returns the value
//! with how it was found ([`CacheStatus`], exposed over HTTP as `X-Cache`).
//!
//! ```text
//! get_or_compute(key)
//!   -> memory                       chain: one moka lookup, the hot path
//!   -> fence, then each tier behind chain: disk (later shared); a hit is
//!                                   promoted into the tiers in front
//!   -> in-flight map                inflight: join a running computation
//!   -> compute (spawned task)       inflight: one per key, panics caught
//!   -> write-back                   chain: memory now, disk queued, unless
//!                                   the model's cache was dropped meanwhile
//! ```
//!
//! Everything the read path decides lives in this module: the tier chain
//! ([`chain`], [`tier`]), the fences and generations that make removals win
//! races ([`fence`]), the single-flight map ([`inflight`]), the counters
//! ([`counters`]) and the fan-out over a request's parts ([`many`]). The
//! storage engines below it are [`crate::store`].
//!
//! The computation belongs to a spawned task, so a caller that gives up
//! (drop, timeout) never fails the others; when every caller has given up,
//! the computation is cancelled and nothing is stored.

pub(crate) mod chain;
pub(crate) mod counters;
mod disk;
pub(crate) mod fence;
pub(crate) mod inflight;
pub(crate) mod many;
mod shared;
pub(crate) mod tier;

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;

pub use self::{chain::Store, counters::CacheMetrics, inflight::Policy, tier::Tier};
pub(crate) use self::{counters::TierLabel, shared::SharedMetrics};
use self::{
    inflight::{Inflight, Join, Origin},
    tier::Claim,
};
use crate::{
    error::{Error, Result},
    store::{Entry, Key},
};

/// How a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Found in a tier.
    Hit(Tier),
    /// Answered by a computation another caller started (on this server,
    /// or on another one of the fleet).
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
        let metrics = store.metrics();
        let inflight = Inflight::new(metrics.in_flight.clone(), metrics.writes_dropped.clone());
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
        if lookup.policy.read {
            // The hit path: one memory lookup, nothing else.
            if let Some(entry) = self.store.get_memory(&key) {
                return Ok((entry, CacheStatus::Hit(Tier::Memory)));
            }
        }
        // The rest in its own allocation: a caller's task then stays small,
        // and tokio copies a finished task's whole state once or twice,
        // 10,000 times over when a result fans out (ARCHITECTURE.md §3).
        Box::pin(async move {
            let store = &self.store;
            let metrics = store.metrics();
            let mut compute = Some(compute);
            loop {
                // Read before looking (again): see `Store::fence`.
                let fence = store.fence(&key);
                if lookup.policy.read {
                    // Boxed: its state would otherwise make every waiter's
                    // future larger (ARCHITECTURE.md §3).
                    if let Some((entry, tier)) = store.lookup(&key).await? {
                        return Ok((entry, CacheStatus::Hit(tier)));
                    }
                }
                // Read before computing: a drop since makes the result stale.
                let generation = store.generation(key.namespace);
                let joined = self.inflight.join(
                    &key,
                    lookup.policy,
                    generation,
                    || lookup.policy.read && store.fence(&key) != fence,
                    || {
                        let work = compute.take().expect("compute is taken once")();
                        let clock = store.clock().clone();
                        // One computation fleet-wide: the leader of this
                        // server's flight agrees with the others' (a shared
                        // tier's lease, ARCHITECTURE.md §5).
                        let claim = lookup.policy.read.then(|| store.claim(&key)).flatten();
                        async move {
                            let lease = match claim {
                                Some(claim) => match claim.await {
                                    Claim::Found(entry) => return Ok((entry, Origin::Fleet)),
                                    Claim::Lead(lease) => Some(lease),
                                    Claim::Alone => None,
                                },
                                None => None,
                            };
                            let value = work.await.map_err(Into::into)?;
                            let entry = Entry {
                                value: value.into(),
                                content_type: None,
                                expires_at: lookup.ttl.map(|t| clock.deadline(t)),
                            };
                            if let Some(lease) = lease {
                                lease.complete(&entry).await;
                            }
                            Ok((entry, Origin::Computed))
                        }
                    },
                    {
                        let (store, key) = (store.clone(), key.clone());
                        move |entry: &Entry| store.land(&key, entry, generation)
                    },
                );
                return match joined {
                    Join::LookAgain => continue,
                    Join::Landed(entry) => {
                        metrics.coalesced();
                        Ok((entry, CacheStatus::Coalesced))
                    }
                    Join::Followed(waiter) => {
                        metrics.coalesced();
                        // Never called: release what it and the key hold now,
                        // not on the fan-out's clock (ARCHITECTURE.md §3).
                        drop((compute, key));
                        let (entry, _) = waiter.wait(lookup.timeout).await?;
                        Ok((entry, CacheStatus::Coalesced))
                    }
                    // Counted once known: a result another server computed
                    // (its lease) is coalesced fleet-wide, not a miss.
                    Join::Led(waiter) => {
                        drop(key);
                        match waiter.wait(lookup.timeout).await {
                            Ok((entry, Origin::Fleet)) => {
                                metrics.coalesced();
                                Ok((entry, CacheStatus::Coalesced))
                            }
                            outcome => {
                                metrics.miss();
                                outcome.map(|(entry, _)| (entry, CacheStatus::Miss))
                            }
                        }
                    }
                };
            }
        })
        .await
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
