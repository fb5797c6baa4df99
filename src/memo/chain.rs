//! [`Store`]: the chain of tiers, front to back (memory, then each
//! [`Level`] behind it), and every rule about moving entries between them.
//!
//! - **Lookup**: memory, then each level in order. A hit is copied into
//!   every tier in front of the one that held it (a promotion), only if no
//!   write to the key committed since the lookup began (the key's fence):
//!   a deleted value, whose client already has its `204`, is never brought
//!   back.
//! - **Write-back** of a computed result: admitted by the local size
//!   limits, into memory at once, then queued into each level, only if its
//!   model's cache was not dropped since the computation began (the
//!   namespace's generation).
//! - **Removal**: a key or a namespace leaves every tier; a namespace drop
//!   bumps its generation first.
//!
//! Behind disk may come the shared tier ([`super::shared`], when
//! `shared_url` is set): without it the chain is memory and disk only.
//!
//! The fences and generations are [`super::fence`]; the hit and KV-miss
//! counters are bumped here. KV reads and writes come through here too, so
//! every tier in the chain answers them.

use std::{
    future::Future,
    sync::{Arc, Weak},
};

use prometheus_client::metrics::counter::Counter;

use super::{
    counters::CacheMetrics,
    disk::Disk,
    fence::{Fences, Generations},
    shared::{Invalidation, Shared, SharedMetrics},
    tier::{Claim, Level, Tier},
};
use crate::{
    error::Result,
    events::Events,
    store::{memory::MemoryTier, Clock, Entry, Key, Local, StoreOptions, Usage},
};

#[cfg(test)]
mod races;
#[cfg(test)]
mod third_tier;

/// A tier behind memory, with its hits series resolved once.
struct Behind {
    level: Box<dyn Level>,
    tier: Tier,
    hits: Counter,
}

/// The cache: its tiers in read order. Cheap to clone; all clones share one
/// store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The front of the chain; its hit is the hot path.
    memory: MemoryTier,
    memory_hits: Counter,
    /// The tiers behind memory, in read order.
    behind: Vec<Behind>,
    local: Local,
    fences: Arc<Fences>,
    generations: Generations,
    metrics: CacheMetrics,
    /// The shared tier's series, when there is one.
    shared: Option<SharedMetrics>,
    /// Hold a promotion after its read and after its publish.
    #[cfg(test)]
    promotion: [super::fence::Gate; 2],
}

impl Store {
    /// Open the store in `options.dir` and start its writer and sweeper.
    /// Must be called inside a tokio runtime.
    pub async fn open(options: StoreOptions) -> Result<Store> {
        Store::open_reporting(options, Events::default(), CacheMetrics::default()).await
    }

    /// [`Store::open`], reporting changes to `events` and reads to
    /// `metrics` (the server's [`crate::telemetry::Telemetry`]).
    pub(crate) async fn open_reporting(
        options: StoreOptions,
        events: Events,
        metrics: CacheMetrics,
    ) -> Result<Store> {
        let fences = Arc::new(Fences::new());
        let shared_options = options.shared.clone();
        let local = Local::open(options, fences.clone(), events).await?;
        // The chain behind memory, in read order.
        let mut levels: Vec<Box<dyn Level>> = vec![Box::new(Disk(local.clone()))];
        let mut shared_metrics = None;
        let mut invalidations = None;
        if let Some(options) = shared_options {
            let (shared, heard) = Shared::open(options, local.clock().clone())?;
            shared_metrics = Some(shared.metrics().clone());
            invalidations = Some(heard);
            levels.push(Box::new(shared));
        }
        let behind = levels
            .into_iter()
            .map(|level| Behind {
                tier: level.tier(),
                hits: metrics.hits_of(level.tier()),
                level,
            })
            .collect();
        let store = Store {
            inner: Arc::new(Inner {
                memory: local.memory().clone(),
                memory_hits: metrics.hits_of(Tier::Memory),
                behind,
                local,
                fences,
                generations: Generations::default(),
                metrics,
                shared: shared_metrics,
                #[cfg(test)]
                promotion: Default::default(),
            }),
        };
        if let Some(heard) = invalidations {
            tokio::spawn(apply_invalidations(Arc::downgrade(&store.inner), heard));
        }
        Ok(store)
    }

    /// The live entry under `key` in the memory tier (counted as a hit);
    /// the KV hot path asks with a borrowed key (ARCHITECTURE.md §1).
    #[inline]
    pub fn get_memory<Q>(&self, key: &Q) -> Option<Entry>
    where
        Q: moka::Equivalent<Key> + std::hash::Hash + ?Sized,
    {
        let entry = self.inner.memory.get(key)?;
        self.inner.memory_hits.inc();
        Some(entry)
    }

    /// The live entry under `key` and the tier that held it; a read no
    /// tier answers counts as a miss (a KV `404`).
    pub async fn get(&self, key: &Key) -> Result<Option<(Entry, Tier)>> {
        let found = self.lookup(key).await?;
        if found.is_none() {
            self.inner.metrics.miss();
        }
        Ok(found)
    }

    /// [`Store::get`] without counting a miss: the memoizer counts its own.
    pub(crate) async fn lookup(&self, key: &Key) -> Result<Option<(Entry, Tier)>> {
        let inner = &self.inner;
        if let Some(entry) = self.get_memory(key) {
            return Ok(Some((entry, Tier::Memory)));
        }
        let seen = inner.fences.read(key);
        for (i, behind) in inner.behind.iter().enumerate() {
            let Some(entry) = behind.level.get(key).await? else {
                continue;
            };
            #[cfg(test)]
            inner.promotion[0].pass().await;
            // If a write to this key committed while we read, our copy may
            // be older than it (or deleted): leave the tiers in front to
            // the writer. The read itself began before that write was
            // acknowledged, so answering it is still in order.
            inner.fences.publish_if(key, seen, || {
                for front in &inner.behind[..i] {
                    front.level.promote(key, &entry);
                }
                inner.memory.insert(key.clone(), entry.clone());
            });
            #[cfg(test)]
            inner.promotion[1].pass().await;
            behind.hits.inc();
            return Ok(Some((entry, behind.tier)));
        }
        Ok(None)
    }

    /// Store `entry` in every tier; returns once it is durable on disk.
    pub async fn put(&self, key: Key, entry: Entry) -> Result<()> {
        for behind in &self.inner.behind {
            behind.level.put(&key, &entry).await?;
        }
        Ok(())
    }

    /// Publish a result computed under `generation` of its namespace (see
    /// [`Store::generation`]): into memory at once and queued into every
    /// tier behind it, unless the namespace was dropped since, in which
    /// case nothing is published and `None` returned. The future answers
    /// once the writes hold (or were refused: too large, queue full).
    pub(crate) fn land(
        &self,
        key: &Key,
        entry: &Entry,
        generation: u64,
    ) -> Option<impl Future<Output = Result<()>> + Send + 'static> {
        let inner = &self.inner;
        inner.generations.publish_if(key.namespace, generation, || {
            let queued = inner.local.check_size(key, entry).and_then(|()| {
                inner.memory.insert(key.clone(), entry.clone());
                let mut pending = Vec::new();
                for behind in &inner.behind {
                    pending.extend(behind.level.write_back(key, entry)?);
                }
                Ok(pending)
            });
            async move {
                for written in queued? {
                    written.await?;
                }
                Ok(())
            }
        })
    }

    /// Drop what another server removed from the local tiers (all but
    /// the shared one, which that server already changed), under the same
    /// rules as a local removal: a drop bumps the generation first, and a
    /// removal from disk bumps the key's fence.
    async fn forget(&self, invalidation: Invalidation) -> Result<()> {
        let inner = &self.inner;
        let local = inner.behind.iter().filter(|b| b.tier != Tier::Shared);
        match invalidation {
            Invalidation::Key(key) => {
                inner.memory.remove(&key);
                for behind in local {
                    behind.level.remove(&key).await?;
                }
            }
            Invalidation::Namespace(namespace) => {
                inner.generations.bump(namespace);
                inner.memory.remove_namespace(namespace);
                for behind in local {
                    behind.level.drop_namespace(namespace).await?;
                }
            }
        }
        Ok(())
    }

    /// Before computing `key`: which server of the fleet computes it (see
    /// [`Level::claim`]); `None` without a shared tier.
    pub(crate) fn claim(&self, key: &Key) -> Option<futures::future::BoxFuture<'static, Claim>> {
        self.inner.behind.iter().find_map(|b| b.level.claim(key))
    }

    /// The namespace's generation: read it before computing a result, and
    /// hand it to [`Store::land`].
    pub(crate) fn generation(&self, namespace: u32) -> u64 {
        self.inner.generations.current(namespace)
    }

    /// Keep `value`, built from the entries under `sources` (a whole
    /// answer from its rows, ARCHITECTURE.md §1, "The answer cache"), in
    /// the memory tier only, under `key`'s namespace, expiring with the
    /// first of `sources` to expire. Kept only if every source is in
    /// memory now, the namespace was not dropped since `generation` (read
    /// before the sources were) and `value` is within `max_value_size`;
    /// returns whether it was kept.
    pub(crate) fn remember(
        &self,
        key: Key,
        value: bytes::Bytes,
        sources: &[Key],
        generation: u64,
    ) -> bool {
        let inner = &self.inner;
        if value.len() as u64 > inner.local.max_value_size() {
            return false;
        }
        let kept = inner.generations.publish_if(key.namespace, generation, || {
            let mut expires_at = None::<u64>;
            for source in sources {
                let Some(entry) = inner.memory.get(source) else {
                    return false;
                };
                expires_at = match (expires_at, entry.expires_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let entry = Entry {
                value,
                content_type: None,
                expires_at,
            };
            inner.memory.insert(key, entry);
            true
        });
        kept == Some(true)
    }

    /// The entry [`Store::remember`] kept under `key`, if `hits` takes it
    /// (says how many memory hits its sources would have counted); an
    /// entry `hits` refuses is neither returned nor counted.
    #[inline]
    pub(crate) fn recall<Q>(
        &self,
        key: &Q,
        hits: impl FnOnce(&Entry) -> Option<u64>,
    ) -> Option<Entry>
    where
        Q: moka::Equivalent<Key> + std::hash::Hash + ?Sized,
    {
        let entry = self.inner.memory.get(key)?;
        self.inner.memory_hits.inc_by(hits(&entry)?);
        Some(entry)
    }

    /// A number that changes whenever a write to `key` commits. Read it
    /// before looking in the tiers; if it changed by the time the caller
    /// decides to compute, a result was stored meanwhile.
    pub(crate) fn fence(&self, key: &Key) -> u64 {
        self.inner.fences.read(key)
    }

    /// Remove `key` from every tier; returns once the removal is durable.
    /// Returns whether a tier behind memory held it.
    pub async fn delete(&self, key: Key) -> Result<bool> {
        self.inner.memory.remove(&key);
        let mut held = false;
        for behind in &self.inner.behind {
            held |= behind.level.remove(&key).await?;
        }
        Ok(held)
    }

    /// Remove every entry of one namespace from every tier; returns how
    /// many the tiers behind memory held. A result being computed meanwhile
    /// is not stored when it lands.
    pub async fn drop_namespace(&self, namespace: u32) -> Result<u64> {
        // Bump first: a result that landed before is in memory (removed
        // below) and queued ahead of the drop (removed by it behind); one
        // landing after sees the new generation and publishes nothing.
        self.inner.generations.bump(namespace);
        self.inner.memory.remove_namespace(namespace);
        let mut dropped = 0;
        for behind in &self.inner.behind {
            dropped += behind.level.drop_namespace(namespace).await?;
        }
        Ok(dropped)
    }

    /// The disk namespace number of a model name (stable across restarts).
    pub async fn namespace(&self, name: &str) -> Result<u32> {
        let namespace = self.inner.local.namespace(name).await?;
        for behind in &self.inner.behind {
            behind.level.name_namespace(namespace, name);
        }
        Ok(namespace)
    }

    /// The shared tier's series; `None` without a shared tier.
    pub(crate) fn shared(&self) -> Option<&SharedMetrics> {
        self.inner.shared.as_ref()
    }

    /// Current usage of (memory, disk).
    pub fn usage(&self) -> (Usage, Usage) {
        self.inner.local.usage()
    }

    /// Hit and miss counters.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// False from a failed disk commit (e.g. a full disk) until the disk
    /// tier has reopened its database by itself, retrying with backoff;
    /// writes are refused meanwhile and `/healthz` reports it. Reads keep
    /// working.
    pub fn disk_healthy(&self) -> bool {
        self.inner.local.disk_healthy()
    }

    /// The cache event stream (also fed by the model batchers).
    pub fn events(&self) -> &Events {
        self.inner.local.events()
    }

    /// The store's clock (Unix milliseconds, following tokio's time).
    pub fn clock(&self) -> &Clock {
        self.inner.local.clock()
    }

    pub fn max_value_size(&self) -> u64 {
        self.inner.local.max_value_size()
    }

    /// Apply a reloaded `max_value_size`.
    pub fn set_max_value_size(&self, limit: u64) {
        self.inner.local.set_max_value_size(limit);
    }

    /// Commit every queued write and stop the background tasks. The redb
    /// file is closed cleanly when the last clone of the store is dropped.
    pub async fn close(&self) {
        self.inner.local.close().await;
    }
}

/// Apply what other servers announced, until the store is gone.
async fn apply_invalidations(
    store: Weak<Inner>,
    mut heard: tokio::sync::mpsc::Receiver<Invalidation>,
) {
    while let Some(invalidation) = heard.recv().await {
        let Some(inner) = store.upgrade() else { return };
        if let Err(e) = (Store { inner }).forget(invalidation).await {
            tracing::warn!(error = %e, "shared tier: dropping a local copy failed");
        }
    }
}
