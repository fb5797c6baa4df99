//! Disk tier: redb, byte-bounded, durable, fast to open.
//!
//! Layout (one redb file, `infercache.redb` in the data dir):
//! - `entries`: (namespace, key) -> record (header + content type + value).
//!   The namespace keeps one model's entries contiguous (ARCHITECTURE.md §2).
//! - `by_seq`: write sequence -> (namespace, key), the eviction order.
//! - `by_expiry`: (deadline ms, sequence) -> (), the sweep order.
//! - `meta`: running totals (entries, bytes, next sequence) updated in the
//!   same transaction as the data, so start-up reads three numbers instead of
//!   scanning the file.
//! - `namespaces`: model name -> namespace number (0 is the KV API), stable
//!   across restarts.
//!
//! Eviction policy, applied at the end of every write transaction that
//! leaves the tier above `disk_capacity`: expired entries go first, then the
//! oldest *written* entries (FIFO by write sequence). Reads never write, so
//! a disk hit costs no transaction; hot entries live in the memory tier
//! anyway, where moka keeps them by frequency.
//!
//! Every method here blocks: callers run them on blocking threads.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};

use super::{
    fault::{DiskFull, Switchable},
    Clock, Entry, Key,
};
use crate::error::{Error, Result};

const ENTRIES: TableDefinition<(u32, &[u8]), &[u8]> = TableDefinition::new("entries");
const BY_SEQ: TableDefinition<u64, (u32, &[u8])> = TableDefinition::new("by_seq");
const BY_EXPIRY: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NAMESPACES: TableDefinition<&str, u32> = TableDefinition::new("namespaces");

/// Record format version, first byte of every record.
const FORMAT: u8 = 1;
/// version (1) + sequence (8) + deadline (8) + content-type length (2).
const HEADER: usize = 19;
/// Bytes charged per entry beyond its key and record: the two index rows
/// (which repeat the key) and B-tree slack, rounded up.
const ENTRY_OVERHEAD: u64 = 64;
pub use crate::limits::ENTRY_RESERVE;
/// Expired entries removed per sweep transaction, so a sweep never holds
/// the writer for long.
pub const SWEEP_LIMIT: usize = 10_000;
/// redb's page cache; its default (1 GiB) is too much for a sidecar.
const PAGE_CACHE: usize = 64 << 20;

/// One write applied by the group-commit writer.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: Key,
        entry: Entry,
    },
    Delete {
        key: Key,
    },
    /// Remove up to [`SWEEP_LIMIT`] expired entries.
    Sweep,
    /// Remove every entry of one namespace (one model's results).
    DropNamespace(u32),
}

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

/// Running totals, persisted in `meta`.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    entries: u64,
    bytes: u64,
    next_seq: u64,
}

/// The disk tier.
pub struct DiskTier {
    db: Database,
    capacity: u64,
    clock: Clock,
    entries: AtomicU64,
    bytes: AtomicU64,
}

/// Bytes an entry is charged in the disk tier.
fn charge(key: &[u8], record_len: usize) -> u64 {
    2 * key.len() as u64 + record_len as u64 + ENTRY_OVERHEAD
}

impl DiskTier {
    /// Open (or create) the tier in `dir`. Reads only the totals.
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
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("infercache.redb");
        let cannot = |e: &dyn std::fmt::Display| {
            Error::Storage(format!("cannot open {}: {e}", path.display()))
        };
        let mut builder = Database::builder();
        builder.set_cache_size(PAGE_CACHE);
        let db = match fault {
            None => builder.create(&path).map_err(|e| cannot(&e))?,
            Some(full) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(|e| cannot(&e))?;
                let backend = Switchable::new(file, full).map_err(|e| cannot(&e))?;
                builder
                    .create_with_backend(backend)
                    .map_err(|e| cannot(&e))?
            }
        };
        let txn = db.begin_write().map_err(Error::storage)?;
        let totals = {
            txn.open_table(ENTRIES).map_err(Error::storage)?;
            txn.open_table(BY_SEQ).map_err(Error::storage)?;
            txn.open_table(BY_EXPIRY).map_err(Error::storage)?;
            txn.open_table(NAMESPACES).map_err(Error::storage)?;
            let meta = txn.open_table(META).map_err(Error::storage)?;
            load_totals(&meta)?
        };
        txn.commit().map_err(Error::storage)?;
        Ok(DiskTier {
            db,
            capacity,
            clock,
            entries: AtomicU64::new(totals.entries),
            bytes: AtomicU64::new(totals.bytes),
        })
    }

    /// The live entry under `key`; expired entries are not served.
    pub fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let txn = self.db.begin_read().map_err(Error::storage)?;
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

    /// The namespace number of `name`, assigned on first use. Waits for
    /// the write lock if the writer is committing (redb has one writer).
    pub fn namespace(&self, name: &str) -> Result<u32> {
        let read = self.db.begin_read().map_err(Error::storage)?;
        let known = read.open_table(NAMESPACES).map_err(Error::storage)?;
        if let Some(id) = known.get(name).map_err(Error::storage)? {
            return Ok(id.value());
        }
        drop((known, read));
        let txn = self.db.begin_write().map_err(Error::storage)?;
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

    /// Apply `ops` in order in one durable transaction, then evict down to
    /// capacity.
    pub fn apply(&self, ops: &[&Op]) -> Result<Applied> {
        let mut txn = self.db.begin_write().map_err(Error::storage)?;
        // Saves the allocator state with each commit: a crash recovers in
        // milliseconds instead of walking the whole file.
        txn.set_quick_repair(true);
        let (applied, totals) = {
            let mut t = Tables {
                entries: txn.open_table(ENTRIES).map_err(Error::storage)?,
                by_seq: txn.open_table(BY_SEQ).map_err(Error::storage)?,
                by_expiry: txn.open_table(BY_EXPIRY).map_err(Error::storage)?,
                totals: Totals::default(),
            };
            let mut meta = txn.open_table(META).map_err(Error::storage)?;
            t.totals = load_totals(&meta)?;
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
            if t.totals.bytes > self.capacity {
                expired = t.sweep(now, usize::MAX)?;
                evicted = t.evict_oldest(self.capacity)?;
            }
            store_totals(&mut meta, &t.totals)?;
            let applied = Applied {
                counts,
                expired,
                evicted,
            };
            (applied, t.totals)
        };
        txn.commit().map_err(Error::storage)?;
        self.entries.store(totals.entries, Ordering::Relaxed);
        self.bytes.store(totals.bytes, Ordering::Relaxed);
        Ok(applied)
    }
}

/// The tables of one write transaction and the totals it keeps current.
struct Tables<'txn> {
    entries: Table<'txn, (u32, &'static [u8]), &'static [u8]>,
    by_seq: Table<'txn, u64, (u32, &'static [u8])>,
    by_expiry: Table<'txn, (u64, u64), ()>,
    totals: Totals,
}

impl Tables<'_> {
    fn put(&mut self, key: &Key, entry: &Entry) -> Result<()> {
        let seq = self.totals.next_seq;
        self.totals.next_seq += 1;
        let record = encode(seq, entry);
        let old = self
            .entries
            .insert((key.namespace, &key.id[..]), &record[..])
            .map_err(Error::storage)?
            .map(|old| decode(old.value()).map(|(seq, e)| (seq, e.expires_at, old.value().len())))
            .transpose()?;
        if let Some((old_seq, old_deadline, old_len)) = old {
            self.unindex(old_seq, old_deadline, charge(&key.id, old_len))?;
        }
        self.by_seq
            .insert(seq, (key.namespace, &key.id[..]))
            .map_err(Error::storage)?;
        if let Some(at) = entry.expires_at {
            self.by_expiry
                .insert((at, seq), ())
                .map_err(Error::storage)?;
        }
        self.totals.entries += 1;
        self.totals.bytes += charge(&key.id, record.len());
        Ok(())
    }

    /// Remove one entry and its index rows; false if it was not there.
    fn remove(&mut self, namespace: u32, id: &[u8]) -> Result<bool> {
        let old = self
            .entries
            .remove((namespace, id))
            .map_err(Error::storage)?
            .map(|old| decode(old.value()).map(|(seq, e)| (seq, e.expires_at, old.value().len())))
            .transpose()?;
        let Some((seq, deadline, len)) = old else {
            return Ok(false);
        };
        self.unindex(seq, deadline, charge(id, len))?;
        Ok(true)
    }

    /// Forget the index rows and the charge of an entry already removed
    /// from (or replaced in) `entries`.
    fn unindex(&mut self, seq: u64, deadline: Option<u64>, charged: u64) -> Result<()> {
        self.by_seq.remove(seq).map_err(Error::storage)?;
        if let Some(at) = deadline {
            self.by_expiry.remove((at, seq)).map_err(Error::storage)?;
        }
        self.totals.entries = self.totals.entries.saturating_sub(1);
        self.totals.bytes = self.totals.bytes.saturating_sub(charged);
        Ok(())
    }

    /// Remove every entry of namespace `ns`: a range of `entries`, since
    /// its keys start with the namespace.
    fn drop_namespace(&mut self, ns: u32) -> Result<u64> {
        let ids: Vec<Vec<u8>> = self
            .entries
            .range((ns, &[][..])..(ns + 1, &[][..]))
            .map_err(Error::storage)?
            .map(|row| row.map(|(k, _)| k.value().1.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(Error::storage)?;
        for id in &ids {
            self.remove(ns, id)?;
        }
        Ok(ids.len() as u64)
    }

    /// Remove up to `limit` entries whose deadline is at or before `now`.
    fn sweep(&mut self, now: u64, limit: usize) -> Result<u64> {
        let due: Vec<u64> = self
            .by_expiry
            .range(..=(now, u64::MAX))
            .map_err(Error::storage)?
            .take(limit)
            .map(|row| row.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()
            .map_err(Error::storage)?;
        for seq in &due {
            self.remove_by_seq(*seq)?;
        }
        Ok(due.len() as u64)
    }

    /// Remove the oldest-written entries until the total fits `capacity`.
    fn evict_oldest(&mut self, capacity: u64) -> Result<u64> {
        let mut evicted = 0;
        while self.totals.bytes > capacity {
            let Some(seq) = self
                .by_seq
                .first()
                .map_err(Error::storage)?
                .map(|(k, _)| k.value())
            else {
                break;
            };
            self.remove_by_seq(seq)?;
            evicted += 1;
        }
        Ok(evicted)
    }

    fn remove_by_seq(&mut self, seq: u64) -> Result<()> {
        let key = self.by_seq.get(seq).map_err(Error::storage)?.map(|g| {
            let (ns, id) = g.value();
            (ns, id.to_vec())
        });
        match key {
            Some((ns, id)) => self.remove(ns, &id).map(drop),
            // An index row without its entry cannot be produced by `put`
            // and `remove`; drop it so the sweep makes progress regardless.
            None => self.by_seq.remove(seq).map(drop).map_err(Error::storage),
        }
    }
}

fn load_totals(meta: &impl ReadableTable<&'static str, u64>) -> Result<Totals> {
    let get = |name: &str| -> Result<u64> {
        Ok(meta
            .get(name)
            .map_err(Error::storage)?
            .map_or(0, |g| g.value()))
    };
    Ok(Totals {
        entries: get("entries")?,
        bytes: get("bytes")?,
        next_seq: get("next_seq")?,
    })
}

fn store_totals(meta: &mut Table<&'static str, u64>, t: &Totals) -> Result<()> {
    for (name, value) in [
        ("entries", t.entries),
        ("bytes", t.bytes),
        ("next_seq", t.next_seq),
    ] {
        meta.insert(name, value).map_err(Error::storage)?;
    }
    Ok(())
}

fn encode(seq: u64, entry: &Entry) -> Vec<u8> {
    let ct = entry.content_type.as_deref().unwrap_or("").as_bytes();
    let ct_len = u16::try_from(ct.len()).unwrap_or(u16::MAX);
    let ct = &ct[..usize::from(ct_len)];
    let mut out = Vec::with_capacity(HEADER + ct.len() + entry.value.len());
    out.push(FORMAT);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&entry.expires_at.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&ct_len.to_le_bytes());
    out.extend_from_slice(ct);
    out.extend_from_slice(&entry.value);
    out
}

/// (write sequence, entry) from a stored record.
fn decode(record: &[u8]) -> Result<(u64, Entry)> {
    let corrupt = || Error::Storage("corrupt record in the disk tier".into());
    if record.len() < HEADER || record[0] != FORMAT {
        return Err(corrupt());
    }
    let u64_at = |i: usize| u64::from_le_bytes(record[i..i + 8].try_into().expect("8 bytes"));
    let seq = u64_at(1);
    let deadline = u64_at(9);
    let ct_len = usize::from(u16::from_le_bytes([record[17], record[18]]));
    let body = &record[HEADER..];
    if body.len() < ct_len {
        return Err(corrupt());
    }
    let content_type = match ct_len {
        0 => None,
        _ => Some(
            std::str::from_utf8(&body[..ct_len])
                .map_err(|_| corrupt())?
                .into(),
        ),
    };
    let entry = Entry {
        value: Bytes::copy_from_slice(&body[ct_len..]),
        content_type,
        expires_at: (deadline != 0).then_some(deadline),
    };
    Ok((seq, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> Key {
        Key::new(0, id.as_bytes())
    }

    fn entry(value: &[u8], expires_at: Option<u64>) -> Entry {
        Entry {
            value: Bytes::copy_from_slice(value),
            content_type: Some("text/plain".into()),
            expires_at,
        }
    }

    #[test]
    fn record_round_trips() {
        let e = entry(b"hello", Some(42));
        let (seq, back) = decode(&encode(7, &e)).unwrap();
        assert_eq!((seq, back), (7, e));
        assert!(decode(b"\x02short").is_err());
    }

    #[test]
    fn totals_follow_puts_overwrites_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
        let a = Op::Put {
            key: key("a"),
            entry: entry(b"1", None),
        };
        let a2 = Op::Put {
            key: key("a"),
            entry: entry(b"22", None),
        };
        disk.apply(&[&a, &a2]).unwrap();
        assert_eq!(disk.usage().0, 1);
        assert_eq!(disk.get(&key("a")).unwrap().unwrap().value, &b"22"[..]);
        let del = Op::Delete { key: key("a") };
        assert_eq!(disk.apply(&[&del, &del]).unwrap().counts, vec![1, 0]);
        assert_eq!(disk.usage(), (0, 0));
    }

    #[test]
    fn dropping_a_namespace_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
        let ops: Vec<Op> = (0..3u32)
            .flat_map(|ns| {
                (0..5).map(move |i| Op::Put {
                    key: Key::new(ns, [i]),
                    entry: entry(b"v", None),
                })
            })
            .collect();
        disk.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(
            disk.apply(&[&Op::DropNamespace(1)]).unwrap().counts,
            vec![5]
        );
        assert_eq!(disk.usage().0, 10);
        assert!(disk.get(&Key::new(1, [0])).unwrap().is_none());
        assert!(disk.get(&Key::new(2, [4])).unwrap().is_some());
    }

    #[test]
    fn namespaces_are_stable_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
        let a = disk.namespace("a").unwrap();
        let b = disk.namespace("b").unwrap();
        assert!(a != b && a != 0 && b != 0);
        drop(disk);
        let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
        assert_eq!(disk.namespace("b").unwrap(), b);
        assert_eq!(disk.namespace("a").unwrap(), a);
    }

    #[test]
    fn expired_first_then_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        let now = clock.now_ms();
        let value = vec![0u8; 1000];
        let one = charge(b"k0", HEADER + 10 + 1000);
        let disk = DiskTier::open(dir.path(), 3 * one, clock).unwrap();
        // k0 oldest; k1 already expired; k2 live.
        let ops = [
            Op::Put {
                key: key("k0"),
                entry: entry(&value, None),
            },
            Op::Put {
                key: key("k1"),
                entry: entry(&value, Some(now - 1)),
            },
            Op::Put {
                key: key("k2"),
                entry: entry(&value, None),
            },
        ];
        disk.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
        let k3 = Op::Put {
            key: key("k3"),
            entry: entry(&value, None),
        };
        disk.apply(&[&k3]).unwrap();
        // Over capacity by one entry: the expired k1 goes, k0 stays.
        assert!(disk.get(&key("k0")).unwrap().is_some());
        assert_eq!(disk.usage().0, 3);
        let k4 = Op::Put {
            key: key("k4"),
            entry: entry(&value, None),
        };
        disk.apply(&[&k4]).unwrap();
        // Nothing expired left: the oldest written (k0) goes.
        assert!(disk.get(&key("k0")).unwrap().is_none());
        assert!(disk.get(&key("k2")).unwrap().is_some());
        assert!(disk.usage().1 <= 3 * one);
    }
}
