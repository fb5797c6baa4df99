//! "Removals win races" (ARCHITECTURE.md §3): who wins when the read path
//! publishes what it read or computed while a writer removes it.
//!
//! Two kinds of counter, each read before slow work (a disk read, a model
//! run) and checked again at the moment the result would become visible:
//! - [`Fences`], per key (striped): the writer bumps a key's stripe before
//!   it changes the key in memory. A disk value is promoted to memory only
//!   if its stripe did not move during the read, so a deleted value (the
//!   client already has its `204`) is never brought back.
//! - [`Generations`], per namespace (one per model): dropping a model's
//!   cache bumps its generation before removing anything. A computed result
//!   lands (into memory and onto the write queue) only if the generation it
//!   was computed under is still current.
//!
//! A bump takes the counter's lock exclusively and a check-and-publish holds
//! it shared, so a publish either completes before the bump (and the removal
//! that follows the bump takes it away) or sees the bump and publishes
//! nothing. Nothing slow runs under these locks: a memory insert, a
//! non-blocking queue send.

use std::{
    collections::{hash_map::RandomState, HashMap},
    hash::BuildHasher,
};

use parking_lot::RwLock;

use crate::store::{CommitFence, Key};

/// Runs `publish` if `current` (read under the shared lock) equals `seen`.
fn publish_if<T, R>(
    lock: &RwLock<T>,
    current: impl FnOnce(&T) -> u64,
    seen: u64,
    publish: impl FnOnce() -> R,
) -> Option<R> {
    let guard = lock.read();
    (current(&guard) == seen).then(publish)
}

/// Stripes of [`Fences`]. A commit to any key of a stripe makes a
/// promotion of every other key of it skip its copy (the answer is still
/// right, the next read goes back a tier), so there are many: with 64,
/// about 15 % of shared hits under load were never copied, as the
/// promotions' own commits kept moving the stripes (BENCHMARKS.md, "Shared
/// tier"). 16 bytes each.
const STRIPES: usize = 4096;

/// Striped write counters that let a promotion detect a concurrent write.
pub(crate) struct Fences {
    stripes: Box<[RwLock<u64>]>,
    hasher: RandomState,
}

impl Fences {
    pub(crate) fn new() -> Fences {
        Fences {
            stripes: (0..STRIPES).map(|_| RwLock::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    fn stripe(&self, key: &Key) -> &RwLock<u64> {
        let i = self.hasher.hash_one(key) as usize % self.stripes.len();
        &self.stripes[i]
    }

    /// A number that changes whenever a write to `key` commits: read it
    /// before slow work, check it with [`Fences::publish_if`].
    pub(crate) fn read(&self, key: &Key) -> u64 {
        *self.stripe(key).read()
    }

    /// Run `publish` only if no write to `key` was announced since the
    /// fence read `seen`; none can be announced while it runs.
    pub(crate) fn publish_if<R>(
        &self,
        key: &Key,
        seen: u64,
        publish: impl FnOnce() -> R,
    ) -> Option<R> {
        publish_if(self.stripe(key), |n| *n, seen, publish)
    }
}

/// The writer bumps a key's stripe after its change commits and before it
/// applies the change to memory.
impl CommitFence for Fences {
    fn bump(&self, key: &Key) {
        *self.stripe(key).write() += 1;
    }

    fn bump_all(&self) {
        for stripe in &self.stripes {
            *stripe.write() += 1;
        }
    }
}

/// Per-namespace generations, bumped by dropping a namespace's cache.
#[derive(Default)]
pub(crate) struct Generations(RwLock<HashMap<u32, u64>>);

fn generation(map: &HashMap<u32, u64>, namespace: u32) -> u64 {
    map.get(&namespace).copied().unwrap_or(0)
}

impl Generations {
    pub(crate) fn current(&self, namespace: u32) -> u64 {
        generation(&self.0.read(), namespace)
    }

    /// Call before removing the namespace's entries.
    pub(crate) fn bump(&self, namespace: u32) {
        *self.0.write().entry(namespace).or_default() += 1;
    }

    /// Run `publish` only if `namespace` is still at generation `seen`; no
    /// drop can start while it runs.
    pub(crate) fn publish_if<R>(
        &self,
        namespace: u32,
        seen: u64,
        publish: impl FnOnce() -> R,
    ) -> Option<R> {
        publish_if(&self.0, |map| generation(map, namespace), seen, publish)
    }
}

/// A point in a task where a test can hold it: [`Gate::arm`] returns a
/// receiver that fires when the next task reaches the gate and a sender that
/// lets it through. Unarmed, a gate costs one uncontended lock.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Gate(
    parking_lot::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
);

#[cfg(test)]
impl Gate {
    pub(crate) fn arm(
        &self,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (reached, on_reach) = tokio::sync::oneshot::channel();
        let (resume, on_resume) = tokio::sync::oneshot::channel();
        *self.0.lock() = Some((reached, on_resume));
        (on_reach, resume)
    }

    pub(crate) async fn pass(&self) {
        let armed = self.0.lock().take();
        if let Some((reached, resume)) = armed {
            let _ = reached.send(());
            let _ = resume.await;
        }
    }
}
