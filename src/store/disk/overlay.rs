//! What the log holds that redb does not hold yet.
//!
//! A write is acknowledged once its group's log record is synced, and redb
//! takes the group a little later, behind the writer's log stage
//! (ARCHITECTURE.md §2, "Write path"). Until then the disk tier answers a
//! read of such a key from here, so every acknowledged write (a put, a
//! delete, a namespace drop) is readable from the moment it is durable,
//! whether or not redb has it yet. Entries are added only after the sync
//! and removed once redb has committed their group; the writer applies
//! groups in log order and keeps at most a few in flight, so this stays
//! small. After a failed redb commit the entries stay until a recovery has
//! replayed the log into the reopened database.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::op::Op;
use crate::store::entry::{Entry, Key};

/// A group that is in the log: the overlay's sequence after its last op
/// (see [`Overlay::forget`]).
#[derive(Debug, Clone, Copy)]
pub struct Logged {
    upto: u64,
}

/// Logged ops not yet in redb, by key.
#[derive(Default)]
pub(super) struct Overlay(Mutex<State>);

#[derive(Default)]
struct State {
    /// Per key: the sequence of its last logged put or delete, and what
    /// it left (`None`: removed).
    keys: HashMap<Key, (u64, Option<Entry>)>,
    /// Per namespace: the sequence of its last logged drop.
    drops: HashMap<u32, u64>,
    /// Sequence of the next logged op.
    next: u64,
}

impl Overlay {
    /// `ops` are synced to the log, as one group.
    pub fn add(&self, ops: &[&Op]) -> Logged {
        let mut state = self.0.lock();
        for op in ops {
            let seq = state.next;
            state.next += 1;
            match op {
                Op::Put { key, entry } => {
                    state.keys.insert(key.clone(), (seq, Some(entry.clone())));
                }
                Op::Delete { key } => {
                    state.keys.insert(key.clone(), (seq, None));
                }
                Op::DropNamespace(ns) => {
                    state.drops.insert(*ns, seq);
                }
                Op::Sweep => {}
            }
        }
        Logged { upto: state.next }
    }

    /// redb has committed `ops` (logged as `logged`) and, groups being
    /// applied in log order, every op logged before them.
    pub fn forget(&self, ops: &[&Op], logged: Logged) {
        let mut state = self.0.lock();
        for op in ops {
            match op {
                Op::Put { key, .. } | Op::Delete { key } => {
                    if state
                        .keys
                        .get(key)
                        .is_some_and(|(seq, _)| *seq < logged.upto)
                    {
                        state.keys.remove(key);
                    }
                }
                Op::DropNamespace(ns) => {
                    if state.drops.get(ns).is_some_and(|seq| *seq < logged.upto) {
                        state.drops.remove(ns);
                    }
                }
                Op::Sweep => {}
            }
        }
    }

    /// redb holds every logged op (a replay of the whole log).
    pub fn clear(&self) {
        let mut state = self.0.lock();
        state.keys.clear();
        state.drops.clear();
    }

    /// What the log says about `key` beyond redb: `None` if nothing (ask
    /// redb), `Some(None)` if it was removed, else its entry (which may
    /// have expired since).
    pub fn get(&self, key: &Key) -> Option<Option<Entry>> {
        let state = self.0.lock();
        let dropped = state.drops.get(&key.namespace);
        match (state.keys.get(key), dropped) {
            (Some((seq, _)), Some(drop)) if drop > seq => Some(None),
            (Some((_, entry)), _) => Some(entry.clone()),
            (None, Some(_)) => Some(None),
            (None, None) => None,
        }
    }
}
