//! Disk tier: redb, byte-bounded, durable, fast to open.
//!
//! Layout (one redb file, `infercache.redb` in the data dir; see
//! [`tables`]):
//! - `entries`: (namespace, key) -> record (header + content type + value).
//!   The namespace keeps one model's entries contiguous (ARCHITECTURE.md §2).
//! - `by_seq`: write sequence -> (namespace, key), the eviction order.
//! - `by_expiry`: (deadline ms, sequence) -> (), the sweep order.
//! - `meta`: running totals (entries, bytes, next sequence) updated in the
//!   same transaction as the data, so start-up reads three numbers instead of
//!   scanning the file; and the log position the last checkpoint covers.
//! - `namespaces`: model name -> namespace number (0 is the KV API), stable
//!   across restarts.
//!
//! Eviction policy, applied at the end of every write transaction that
//! leaves the charged bytes above the eviction target: expired entries go
//! first, then the oldest *written* entries (FIFO by write sequence), never
//! the transaction's own writes. Reads never write, so a disk hit costs no
//! transaction; hot entries live in the memory tier anyway, where moka
//! keeps them by frequency.
//!
//! `capacity` bounds the file, not just the charged bytes. redb doubles a
//! file under 4 GiB whenever it runs out of free pages and never gives the
//! space back on its own, and a charged byte takes about 1.6 bytes of
//! pages (B-tree fill, redb's own tables). So the eviction target is set
//! for live pages of at most [`LIVE_PERCENT`] of the capacity, which a
//! doubling keeps under it; a commit that still leaves the file above the
//! capacity is followed by [`DiskTier::fit`]: compact, measure how many
//! file bytes a charged byte really takes, lower (or raise) the target to
//! match and evict to it.
//!
//! Durability comes from the write-ahead log ([`wal`]): a group is
//! appended there as one record and synced, then committed to redb with
//! `Durability::None` (no sync). Between the two, reads answer from the
//! [`overlay`] of logged ops, so a write is readable (and acknowledged)
//! as soon as it is durable. [`DiskTier::checkpoint`], run by the
//! writer once the log passes [`WAL_LIMIT`] or [`CHECKPOINT_EVERY`], makes
//! redb durable in one commit that records the log position it covers,
//! and removes the segments before it. Opening replays the log from that
//! position ([`op`] says why a replay may repeat what redb already has).
//!
//! A commit or append that fails (a full disk) suspends writes; the
//! writer calls [`DiskTier::recover`] with backoff, which reopens the file
//! in place once the storage takes writes again ([`file`]) and replays the
//! log over it, since the reopened redb is back at its last checkpoint.
//!
//! Every method here blocks: callers run them on blocking threads.

mod file;
mod keys;
mod op;
mod overlay;
mod record;
mod tables;
#[cfg(test)]
mod tests;
mod wal;

use std::{
    ops::Bound,
    sync::{
        atomic::{AtomicU64, Ordering},
        Weak,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use self::{
    file::DbFile,
    keys::DiskKeys,
    op::{decode_group, encode_group},
    overlay::Overlay,
    record::{decode, HEADER},
    tables::{charge, Tables, Totals, ENTRIES, NAMESPACES},
    wal::Wal,
};
pub use self::{op::Op, overlay::Logged};
use super::{
    entry::{Clock, Entry, Key},
    fault::DiskFull,
};
use crate::error::{Error, Limit, Result};

/// Keys counted per read transaction by [`DiskTier::index_keys`].
const INDEX_CHUNK: usize = 65_536;
/// Expired entries removed per sweep transaction, and expired or old
/// entries removed per commit to make room, so neither holds the writer
/// for long (a tier far above its target, e.g. one written by a version
/// that bounded less, catches up over several commits).
pub const SWEEP_LIMIT: usize = 10_000;
/// Live pages, in percent of the capacity, the eviction target aims at:
/// after a doubling the file is still under the capacity.
pub const LIVE_PERCENT: u64 = 45;
/// File bytes per charged byte assumed until a compaction measures it
/// (8/5: measured 1.57 with 100-byte values, B-tree pages and redb's own
/// tables included), as a fraction.
const PAGES_PER_CHARGE: (u64, u64) = (8, 5);
/// Compactions (each followed by an eviction) one [`DiskTier::fit`] may run.
const FIT_ROUNDS: usize = 3;
/// Log bytes past the last checkpoint that make the writer checkpoint:
/// bounds the log on disk and what an open replays (a full log over a
/// million entries: 0.82 s to open, `benches/startup.rs`), and the pages
/// redb cannot reuse until the next durable commit.
const WAL_LIMIT: u64 = 4 << 20;
/// Longest time a logged write waits for a checkpoint (checked after
/// each commit), so a quiet server restarts without a replay.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// Replayed ops per redb transaction.
const REPLAY_BATCH: usize = 4096;

/// What one transaction did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Per op: entries written (1) or removed.
    pub counts: Vec<u64>,
    /// Expired entries removed to make room.
    pub expired: u64,
    /// Live entries evicted (oldest written first) to fit the capacity.
    pub evicted: u64,
}

/// The disk tier.
pub struct DiskTier {
    file: DbFile,
    capacity: u64,
    /// Charged bytes the tier evicts down to (see the module docs).
    target: AtomicU64,
    /// First write sequence of the last commit that wrote: the eviction
    /// after a compaction spares that commit's writes too.
    last_writes: AtomicU64,
    /// The file's length right after the last compaction: a file no larger
    /// than that is not compacted again (a tiny capacity can be below what
    /// redb's own tables take).
    compacted: AtomicU64,
    clock: Clock,
    entries: AtomicU64,
    bytes: AtomicU64,
    /// Why writes are suspended: set by a failed commit, cleared by a
    /// successful [`DiskTier::recover`].
    broken: Mutex<Option<Error>>,
    /// Which keys the file holds ([`keys`]).
    keys: DiskKeys,
    /// Taken inside the database guard, by whoever appends or checkpoints.
    wal: Mutex<Wal>,
    /// The log position and time of the last checkpoint.
    checkpointed: Mutex<(u64, Instant)>,
    /// Logged ops redb does not hold yet.
    overlay: Overlay,
}

impl DiskTier {
    /// Open (or create) the tier in `dir`. Reads only the totals.
    #[cfg(test)]
    pub fn open(dir: &std::path::Path, capacity: u64, clock: Clock) -> Result<DiskTier> {
        Self::open_with(dir, capacity, clock, None)
    }

    /// [`DiskTier::open`], optionally behind a [`DiskFull`] switch.
    pub fn open_with(
        dir: &std::path::Path,
        capacity: u64,
        clock: Clock,
        fault: Option<DiskFull>,
    ) -> Result<DiskTier> {
        let file = DbFile::open(dir, fault.clone())?;
        let totals = tables::init(&*file.db()?)?;
        let wal = Wal::open(dir, fault)?;
        let (pages, charged) = PAGES_PER_CHARGE;
        let tier = DiskTier {
            file,
            capacity,
            target: AtomicU64::new(scale(capacity, LIVE_PERCENT * charged, 100 * pages)),
            last_writes: AtomicU64::new(totals.next_seq),
            compacted: AtomicU64::new(0),
            clock,
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            broken: Mutex::new(None),
            keys: DiskKeys::default(),
            wal: Mutex::new(wal),
            checkpointed: Mutex::new((totals.checkpoint, Instant::now())),
            overlay: Overlay::default(),
        };
        tier.publish(&totals);
        tier.restore(&*tier.file.db()?, totals.checkpoint)?;
        Ok(tier)
    }

    /// Replay the log from position `from` into `db` (redb as of its last
    /// checkpoint), then checkpoint: the log is cut after its last good
    /// record and everything before that is durable in redb.
    fn restore(&self, db: &Database, from: u64) -> Result<()> {
        let started = Instant::now();
        let mut wal = self.wal.lock();
        let (mut pending, mut ops) = (Vec::new(), 0u64);
        let mut flush = |pending: &mut Vec<Op>| -> Result<()> {
            ops += pending.len() as u64;
            self.commit(db, &pending.iter().collect::<Vec<_>>(), None, None)?;
            pending.clear();
            Ok(())
        };
        let replayed = wal.replay(from, |payload| {
            pending.extend(decode_group(payload)?);
            if pending.len() >= REPLAY_BATCH {
                flush(&mut pending)?;
            }
            Ok(())
        })?;
        flush(&mut pending)?;
        self.checkpoint_with(db, &mut wal)?;
        if replayed.records > 0 || replayed.cut {
            tracing::info!(
                groups = replayed.records,
                writes = ops,
                cut = replayed.cut,
                ms = started.elapsed().as_millis() as u64,
                "replayed the write-ahead log"
            );
        }
        if replayed.cut {
            tracing::warn!("the write-ahead log ended in a torn or corrupt record; cut it there");
        }
        Ok(())
    }

    /// The live entry under `key`; expired entries are not served.
    pub fn get(&self, key: &Key) -> Result<Option<Entry>> {
        if let Some(logged) = self.logged(key) {
            return Ok(logged);
        }
        // The overlay first: a group leaves it only once redb has it. The
        // guard outlives the transaction: no read is in progress while
        // the file is reopened or compacted.
        let db = self.file.db()?;
        let txn = db.begin_read().map_err(Error::storage)?;
        let table = txn.open_table(ENTRIES).map_err(Error::storage)?;
        let Some(guard) = table
            .get((key.namespace, &key.id[..]))
            .map_err(Error::storage)?
        else {
            return Ok(None);
        };
        let entry = decode(guard.value())?.1;
        Ok((!entry.is_expired(&self.clock)).then_some(entry))
    }

    /// What the log holds about `key` that redb may not hold yet: `None`
    /// if nothing, else its live entry or `None` (removed or expired).
    /// Never blocks on the disk; ask this before [`DiskTier::may_hold`].
    pub fn logged(&self, key: &Key) -> Option<Option<Entry>> {
        let found = self.overlay.get(key)?;
        Some(found.filter(|entry| !entry.is_expired(&self.clock)))
    }

    /// False only if `key` is surely not on disk (no probe needed); never
    /// blocks.
    pub fn may_hold(&self, key: &Key) -> bool {
        self.keys.may_hold(key.namespace, &key.id)
    }

    /// Count the keys the file held at open, [`INDEX_CHUNK`] per read
    /// transaction, so that closing the tier waits for one chunk at most;
    /// [`DiskTier::may_hold`] answers "maybe" until it is done. Ends early,
    /// with nothing counted as complete, once the tier is dropped or
    /// [`DiskTier::stop_indexing`] is called.
    pub fn index_keys(tier: Weak<DiskTier>) -> Result<()> {
        let mut after: Option<(u32, Vec<u8>)> = None;
        loop {
            let Some(tier) = tier.upgrade().filter(|t| !t.keys.stopped()) else {
                return Ok(());
            };
            let db = tier.file.db()?;
            let txn = db.begin_read().map_err(Error::storage)?;
            let table = txn.open_table(ENTRIES).map_err(Error::storage)?;
            let rows = match &after {
                None => table.range::<(u32, &[u8])>(..),
                Some((ns, id)) => {
                    table.range::<(u32, &[u8])>((Bound::Excluded((*ns, &id[..])), Bound::Unbounded))
                }
            };
            let mut last = None;
            for (counted, row) in rows.map_err(Error::storage)?.enumerate() {
                let (key, _) = row.map_err(Error::storage)?;
                let (ns, id) = key.value();
                tier.keys.add(tier.keys.fingerprint(ns, id));
                if counted + 1 == INDEX_CHUNK {
                    last = Some((ns, id.to_vec()));
                    break;
                }
            }
            match last {
                Some(last) => after = Some(last),
                None => {
                    tier.keys.mark_complete();
                    return Ok(());
                }
            }
        }
    }

    /// Make [`DiskTier::index_keys`] stop after its current chunk.
    pub fn stop_indexing(&self) {
        self.keys.stop();
    }

    /// The namespace number of `name`, assigned on first use. Waits for
    /// the write lock if the writer is committing (redb has one writer).
    pub fn namespace(&self, name: &str) -> Result<u32> {
        let db = self.file.db()?;
        let read = db.begin_read().map_err(Error::storage)?;
        let known = read.open_table(NAMESPACES).map_err(Error::storage)?;
        if let Some(id) = known.get(name).map_err(Error::storage)? {
            return Ok(id.value());
        }
        drop((known, read));
        let txn = db.begin_write().map_err(Error::storage)?;
        let id = {
            let mut table = txn.open_table(NAMESPACES).map_err(Error::storage)?;
            let known = table.get(name).map_err(Error::storage)?.map(|g| g.value());
            match known {
                Some(id) => id,
                None => {
                    let next = table.len().map_err(Error::storage)? as u32 + 1;
                    table.insert(name, next).map_err(Error::storage)?;
                    next
                }
            }
        };
        txn.commit().map_err(Error::storage)?;
        Ok(id)
    }

    /// Refuse (413) an entry whose charge alone exceeds the capacity: its
    /// commit would evict it again, after its writer was told it is stored.
    pub fn check_fits(&self, key: &Key, entry: &Entry) -> Result<()> {
        let ct = entry
            .content_type
            .as_deref()
            .map_or(0, str::len)
            .min(usize::from(u16::MAX));
        let overhead = charge(&key.id, HEADER + ct);
        if overhead + entry.value.len() as u64 > self.capacity {
            return Err(Error::TooLarge {
                limit: self.capacity.saturating_sub(overhead),
                over: Limit::DiskCapacity,
            });
        }
        Ok(())
    }

    /// (entries, bytes) as of the last commit.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.entries.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The redb file's length in bytes.
    #[cfg(test)]
    pub fn file_len(&self) -> u64 {
        self.file.len()
    }

    /// Whether the file is larger than the capacity, and has grown since
    /// it was last compacted (then call [`DiskTier::fit`]).
    pub fn over_capacity(&self) -> bool {
        let len = self.file.len();
        len > self.capacity && len > self.compacted.load(Ordering::Relaxed)
    }

    /// Whether writes are accepted (no failed commit since the last
    /// successful [`DiskTier::recover`]).
    pub fn writable(&self) -> bool {
        self.broken.lock().is_none()
    }

    /// [`DiskTier::log`], then [`DiskTier::apply_logged`].
    #[cfg(test)]
    pub fn apply(&self, ops: &[&Op]) -> Result<Applied> {
        let logged = self.log(ops)?;
        self.apply_logged(ops, Some(logged))
    }

    /// Append `ops` to the log as one record and sync it: durable, and
    /// readable through [`DiskTier::get`], once this returns. While writes
    /// are suspended, refuses at once.
    pub fn log(&self, ops: &[&Op]) -> Result<Logged> {
        self.guarded(|| {
            let mut wal = self.wal.lock();
            wal.append(|out| encode_group(ops, out))?;
            Ok(self.overlay.add(ops))
        })
    }

    /// Apply `ops` in one redb transaction (not synced: the log is) and
    /// evict down to the target; `logged` is what [`DiskTier::log`]
    /// returned for them (`None`: nothing was logged, sweeps only). Groups
    /// must come in log order. Runs even while a later group's failed
    /// append has suspended writes: these are durable. If it fails, writes
    /// are suspended; the ops stay readable from the overlay, and
    /// [`DiskTier::recover`] replays them from the log.
    pub fn apply_logged(&self, ops: &[&Op], logged: Option<Logged>) -> Result<Applied> {
        let result = self
            .file
            .db()
            .and_then(|db| self.commit(&db, ops, None, None));
        match (&result, logged) {
            (Ok(_), Some(logged)) => self.overlay.forget(ops, logged),
            (Ok(_), None) => {}
            (Err(err), _) => *self.broken.lock() = Some(err.clone()),
        }
        result
    }

    /// Whether the log has grown past [`WAL_LIMIT`] since the last
    /// checkpoint, or has waited [`CHECKPOINT_EVERY`] for one.
    pub fn checkpoint_due(&self) -> bool {
        let end = self.wal.lock().end();
        let (at, when) = *self.checkpointed.lock();
        end.saturating_sub(at) > WAL_LIMIT || (end > at && when.elapsed() >= CHECKPOINT_EVERY)
    }

    /// Make redb durable up to the log's end and drop the log before it.
    pub fn checkpoint(&self) -> Result<()> {
        self.guarded(|| self.checkpoint_with(&*self.file.db()?, &mut self.wal.lock()))
    }

    /// New appends go to a fresh segment; one durable commit records the
    /// position it starts at; the segments before it are removed. If the
    /// commit fails, the old segments stay and a replay covers them.
    fn checkpoint_with(&self, db: &Database, wal: &mut Wal) -> Result<()> {
        wal.rotate()?;
        let upto = wal.end();
        self.commit(db, &[], None, Some(upto))?;
        *self.checkpointed.lock() = (upto, Instant::now());
        wal.remove_old();
        Ok(())
    }

    /// Run `work` unless writes are suspended; suspend them if it fails
    /// (redb refuses every write after a failed commit anyway).
    fn guarded<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Some(err) = &*self.broken.lock() {
            return Err(Error::Storage(format!(
                "disk writes are suspended since a commit failed ({err}); retrying"
            )));
        }
        work().inspect_err(|err| *self.broken.lock() = Some(err.clone()))
    }

    /// Reopen the database after a failed commit, once the storage takes
    /// writes again, and replay the log over it; writes are accepted from
    /// then on.
    pub fn recover(&self) -> Result<()> {
        self.file.reopen(|db| {
            let totals = tables::init(db)?;
            self.publish(&totals);
            self.restore(db, totals.checkpoint)
        })?;
        self.overlay.clear();
        *self.broken.lock() = None;
        Ok(())
    }

    /// Bring the file back within the capacity if the last commit left it
    /// larger (see the module docs). Returns what it evicted.
    pub fn fit(&self) -> Result<Applied> {
        let mut done = Applied::default();
        for round in 0..FIT_ROUNDS {
            // After an eviction, compact again even if the file did not
            // grow: the eviction freed pages only a compaction gives back.
            let over = match round {
                0 => self.over_capacity(),
                _ => self.file.len() > self.capacity,
            };
            if !over {
                break;
            }
            // Compaction commits durably: checkpoint first, so the log
            // position redb records is current.
            self.checkpoint()?;
            self.guarded(|| self.file.compact())?;
            let len = self.file.len();
            self.compacted.store(len, Ordering::Relaxed);
            self.learn(len);
            if self.usage().1 <= self.target.load(Ordering::Relaxed) {
                break;
            }
            let spared = self.last_writes.load(Ordering::Relaxed);
            let evicted =
                self.guarded(|| self.commit(&*self.file.db()?, &[], Some(spared), None))?;
            done.expired += evicted.expired;
            done.evicted += evicted.evicted;
        }
        Ok(done)
    }

    /// Set the target from a freshly compacted file of `len` bytes: the
    /// charged bytes at which live pages take [`LIVE_PERCENT`] of the
    /// capacity. Only once the data outweighs redb's fixed tables.
    fn learn(&self, len: u64) {
        let charged = self.usage().1;
        if len == 0 || charged < self.capacity / 8 {
            return;
        }
        let target = scale(scale(self.capacity, LIVE_PERCENT, 100), charged, len);
        self.target
            .store(target.min(self.capacity), Ordering::Relaxed);
    }

    /// One transaction: `ops`, then eviction down to the target of entries
    /// written before `spare_from` (default: this commit's first write).
    /// Not durable (the log is), unless it is a checkpoint: then it records
    /// the log position `checkpoint` it covers.
    fn commit(
        &self,
        db: &Database,
        ops: &[&Op],
        spare_from: Option<u64>,
        checkpoint: Option<u64>,
    ) -> Result<Applied> {
        let mut txn = db.begin_write().map_err(Error::storage)?;
        match checkpoint {
            // Saves the allocator state with the checkpoint: a crash
            // recovers in milliseconds instead of walking the whole file.
            Some(_) => txn.set_quick_repair(true),
            None => txn
                .set_durability(Durability::None)
                .map_err(Error::storage)?,
        }
        let target = self.target.load(Ordering::Relaxed);
        let (applied, totals, first_seq) = {
            let mut t = Tables::open(&txn, &self.keys)?;
            let first_seq = t.totals.next_seq;
            let spare_from = spare_from.unwrap_or(first_seq);
            let now = self.clock.now_ms();
            let mut counts = Vec::with_capacity(ops.len());
            for op in ops {
                counts.push(match op {
                    Op::Put { key, entry } => t.put(key, entry).map(|()| 1)?,
                    Op::Delete { key } => u64::from(t.remove(key.namespace, &key.id)?),
                    Op::Sweep => t.sweep(now, SWEEP_LIMIT)?,
                    Op::DropNamespace(ns) => t.drop_namespace(*ns)?,
                });
            }
            let (mut expired, mut evicted) = (0, 0);
            // A checkpoint only makes durable what the commits before it
            // did (each of which evicted as needed).
            if checkpoint.is_none() && t.totals.bytes > target {
                expired = t.sweep(now, SWEEP_LIMIT)?;
                evicted = t.evict_oldest(target, spare_from, SWEEP_LIMIT as u64)?;
            }
            let applied = Applied {
                counts,
                expired,
                evicted,
            };
            (applied, t.save(&txn, checkpoint)?, first_seq)
        };
        let (totals, removed) = totals;
        txn.commit().map_err(Error::storage)?;
        self.keys.remove(&removed);
        self.publish(&totals);
        if !ops.is_empty() {
            self.last_writes.store(first_seq, Ordering::Relaxed);
        }
        Ok(applied)
    }

    fn publish(&self, totals: &Totals) {
        self.entries.store(totals.entries, Ordering::Relaxed);
        self.bytes.store(totals.bytes, Ordering::Relaxed);
    }
}

/// `value * num / den` without overflow (saturating).
fn scale(value: u64, num: u64, den: u64) -> u64 {
    let scaled = u128::from(value) * u128::from(num) / u128::from(den.max(1));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}
