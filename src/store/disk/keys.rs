//! Which keys the disk tier holds, in memory, so that looking up a key
//! that was never stored skips the disk probe: a hand-off to the blocking
//! pool and a redb read, most of a miss's cost before it computes or asks
//! the shared tier (ARCHITECTURE.md §2).
//!
//! It answers "maybe" or "no", and "no" is always right. A key is a 64-bit
//! fingerprint (SipHash with this process's random key) counted once per
//! key on disk that shares it, so a fingerprint two keys share is never
//! forgotten while one of them is there. A key new to the file counts
//! before its transaction commits; a removal counts only after it commits,
//! so a failed commit leaves a count too high (a needless probe), never
//! too low (a lost entry). Until the keys already in the file are counted
//! (in the background, after open, by [`super::DiskTier::index_keys`]) it
//! answers "maybe" for every key.
//!
//! Cost: about 30 bytes of memory per key on disk.

use std::{
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicBool, Ordering},
};

use dashmap::{mapref::entry::Entry as Slot, DashMap};

/// The fingerprints of the keys on disk, with how many keys share each.
#[derive(Default)]
pub(crate) struct DiskKeys {
    counts: DashMap<u64, u32>,
    hasher: RandomState,
    /// Every key in the file at open is counted.
    complete: AtomicBool,
    /// The tier closes: stop counting the keys in the file.
    stop: AtomicBool,
}

impl DiskKeys {
    pub(crate) fn fingerprint(&self, namespace: u32, id: &[u8]) -> u64 {
        self.hasher.hash_one((namespace, id))
    }

    /// False only if no key on disk is `(namespace, id)`.
    pub(crate) fn may_hold(&self, namespace: u32, id: &[u8]) -> bool {
        !self.complete.load(Ordering::Acquire)
            || self.counts.contains_key(&self.fingerprint(namespace, id))
    }

    /// Count one more key under `fingerprint`.
    pub(crate) fn add(&self, fingerprint: u64) {
        *self.counts.entry(fingerprint).or_insert(0) += 1;
    }

    /// One key under each of `fingerprints` is gone (committed).
    pub(crate) fn remove(&self, fingerprints: &[u64]) {
        for fingerprint in fingerprints {
            if let Slot::Occupied(mut slot) = self.counts.entry(*fingerprint) {
                *slot.get_mut() -= 1;
                if *slot.get() == 0 {
                    slot.remove();
                }
            }
        }
    }

    /// Every key that was in the file at open has been counted.
    pub(crate) fn mark_complete(&self) {
        self.complete.store(true, Ordering::Release);
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Distinct fingerprints counted (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_is_only_said_of_keys_not_counted() {
        let keys = DiskKeys::default();
        assert!(keys.may_hold(1, b"a"), "maybe until complete");
        keys.mark_complete();
        assert!(!keys.may_hold(1, b"a"));
        let a = keys.fingerprint(1, b"a");
        keys.add(a);
        keys.add(a);
        assert!(keys.may_hold(1, b"a") && !keys.may_hold(2, b"a"));
        keys.remove(&[a]);
        assert!(keys.may_hold(1, b"a"), "one of two keys sharing it is left");
        keys.remove(&[a, a]);
        assert!(!keys.may_hold(1, b"a"));
        assert_eq!(keys.len(), 0);
    }
}
