//! Memory tier: a moka cache weighted by bytes, with per-entry TTL.
//!
//! moka gives TinyLFU admission, LRU eviction within its byte budget and
//! expiry (through [`Expiry`]). moka's own clock decides when memory is
//! reclaimed, but *serving* is decided by our [`Clock`]: an entry past its
//! deadline is never returned, even if moka has not dropped it yet.

use std::{
    hash::Hash,
    time::{Duration, Instant},
};

use moka::{notification::RemovalCause, sync::Cache, Equivalent, Expiry};

use super::entry::{Clock, Entry, Key};
use crate::events::{Event, Events};

/// Fixed per-entry cost charged on top of key and value bytes: the moka
/// node, our `Entry` and the hash-table slot (measured roughly, rounded up).
pub const ENTRY_OVERHEAD: u32 = 128;

/// Bytes an entry is charged in the memory tier.
pub fn weight(key: &Key, entry: &Entry) -> u32 {
    let bytes = key.id.len()
        + entry.value.len()
        + entry.content_type.as_deref().map_or(0, str::len)
        + ENTRY_OVERHEAD as usize;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Tells moka how long each entry lives, from its absolute deadline.
struct Deadline(Clock);

impl Deadline {
    fn remaining(&self, entry: &Entry) -> Option<Duration> {
        entry
            .expires_at
            .map(|at| Duration::from_millis(at.saturating_sub(self.0.now_ms())))
    }
}

impl Expiry<Key, Entry> for Deadline {
    fn expire_after_create(&self, _: &Key, entry: &Entry, _: Instant) -> Option<Duration> {
        self.remaining(entry)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(entry)
    }
}

/// The memory tier.
#[derive(Clone)]
pub struct MemoryTier {
    /// Hashed with aHash, randomly keyed per process: a few times cheaper
    /// than the default SipHash on the hot path (ARCHITECTURE.md §1, "The
    /// hot path"), and still unpredictable to a client choosing KV keys.
    cache: Cache<Key, Entry, ahash::RandomState>,
    clock: Clock,
}

impl MemoryTier {
    pub fn new(capacity_bytes: u64, clock: Clock, events: Events) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(weight)
            .expire_after(Deadline(clock.clone()))
            .support_invalidation_closures()
            .eviction_listener(move |_, _, cause| match cause {
                RemovalCause::Size => events.emit(Event::Evicted {
                    tier: "memory",
                    count: 1,
                }),
                RemovalCause::Expired => events.emit(Event::Expired {
                    tier: "memory",
                    count: 1,
                }),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build_with_hasher(ahash::RandomState::new());
        MemoryTier { cache, clock }
    }

    /// The live entry under `key` (a [`Key`] or its borrowed form), if any.
    pub fn get<Q: Equivalent<Key> + Hash + ?Sized>(&self, key: &Q) -> Option<Entry> {
        let entry = self.cache.get(key)?;
        if entry.is_expired(&self.clock) {
            self.cache.invalidate(key);
            return None;
        }
        Some(entry)
    }

    pub fn insert(&self, key: Key, entry: Entry) {
        self.cache.insert(key, entry);
    }

    pub fn remove(&self, key: &Key) {
        self.cache.invalidate(key);
    }

    /// Drop every entry of one namespace (moka does it lazily).
    pub fn remove_namespace(&self, namespace: u32) {
        // `invalidate_entries_if` only errors when the cache was built
        // without support for it; ours is.
        let _ = self
            .cache
            .invalidate_entries_if(move |key, _| key.namespace == namespace);
    }

    /// (entries, weighted bytes), after moka has applied pending work.
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}
