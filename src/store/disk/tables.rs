//! The five tables of the disk tier and the write-side operations on them.
//! Every change to `entries` goes through [`Tables`], which keeps the two
//! indexes and the running totals in step with it inside the same
//! transaction, so the totals in `meta` are always those of the data.

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{
    keys::DiskKeys,
    record::{decode, encode},
};
use crate::error::{Error, Result};
use crate::store::entry::{Entry, Key};

pub(super) const ENTRIES: TableDefinition<(u32, &[u8]), &[u8]> = TableDefinition::new("entries");
pub(super) const BY_SEQ: TableDefinition<u64, (u32, &[u8])> = TableDefinition::new("by_seq");
pub(super) const BY_EXPIRY: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_expiry");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const NAMESPACES: TableDefinition<&str, u32> = TableDefinition::new("namespaces");

/// The `meta` row holding the log position of the last checkpoint.
const WAL_POSITION: &str = "wal";

/// Bytes charged per entry beyond its key and record: the two index rows
/// (which repeat the key) and B-tree slack, rounded up.
pub(super) const ENTRY_OVERHEAD: u64 = 64;

/// Bytes an entry is charged in the disk tier.
pub(super) fn charge(key: &[u8], record_len: usize) -> u64 {
    2 * key.len() as u64 + record_len as u64 + ENTRY_OVERHEAD
}

/// Running totals, persisted in `meta`, and the write-ahead log position
/// the last checkpoint covers (ARCHITECTURE.md §2).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Totals {
    pub entries: u64,
    pub bytes: u64,
    pub next_seq: u64,
    pub checkpoint: u64,
}

/// Create the tables a new file lacks and read the totals: all that
/// opening (or reopening) the tier reads.
pub(super) fn init(db: &Database) -> Result<Totals> {
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
    Ok(totals)
}

/// The tables of one write transaction and the totals it keeps current.
pub(super) struct Tables<'txn> {
    pub entries: Table<'txn, (u32, &'static [u8]), &'static [u8]>,
    pub by_seq: Table<'txn, u64, (u32, &'static [u8])>,
    pub by_expiry: Table<'txn, (u64, u64), ()>,
    pub totals: Totals,
    /// Counts a new key at once; removals wait for the commit.
    keys: &'txn DiskKeys,
    /// Fingerprints of the keys removed, for [`DiskKeys::remove`] once the
    /// transaction has committed.
    pub removed: Vec<u64>,
}

impl<'txn> Tables<'txn> {
    /// The tables of `txn`, with the totals as of its start.
    pub(super) fn open(txn: &'txn WriteTransaction, keys: &'txn DiskKeys) -> Result<Tables<'txn>> {
        let meta = txn.open_table(META).map_err(Error::storage)?;
        Ok(Tables {
            entries: txn.open_table(ENTRIES).map_err(Error::storage)?,
            by_seq: txn.open_table(BY_SEQ).map_err(Error::storage)?,
            by_expiry: txn.open_table(BY_EXPIRY).map_err(Error::storage)?,
            totals: load_totals(&meta)?,
            keys,
            removed: Vec::new(),
        })
    }

    /// Write the totals back to `meta`, in the same transaction, with the
    /// log position a checkpoint covers; returns them and the fingerprints
    /// of the keys removed.
    pub(super) fn save(
        self,
        txn: &WriteTransaction,
        checkpoint: Option<u64>,
    ) -> Result<(Totals, Vec<u64>)> {
        let mut meta = txn.open_table(META).map_err(Error::storage)?;
        store_totals(&mut meta, &self.totals)?;
        if let Some(at) = checkpoint {
            meta.insert(WAL_POSITION, at).map_err(Error::storage)?;
        }
        Ok((self.totals, self.removed))
    }

    pub(super) fn put(&mut self, key: &Key, entry: &Entry) -> Result<()> {
        let seq = self.totals.next_seq;
        self.totals.next_seq += 1;
        let record = encode(seq, entry);
        let old = self
            .entries
            .insert((key.namespace, &key.id[..]), &record[..])
            .map_err(Error::storage)?
            .map(|old| decode(old.value()).map(|(seq, e)| (seq, e.expires_at, old.value().len())))
            .transpose()?;
        match old {
            Some((old_seq, old_deadline, old_len)) => {
                self.unindex(old_seq, old_deadline, charge(&key.id, old_len))?;
            }
            None => self.keys.add(self.keys.fingerprint(key.namespace, &key.id)),
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
    pub(super) fn remove(&mut self, namespace: u32, id: &[u8]) -> Result<bool> {
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
        self.removed.push(self.keys.fingerprint(namespace, id));
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
    pub(super) fn drop_namespace(&mut self, ns: u32) -> Result<u64> {
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
    pub(super) fn sweep(&mut self, now: u64, limit: usize) -> Result<u64> {
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

    /// Remove the oldest-written entries until the total fits `target`,
    /// at most `limit` of them and none written at or after sequence
    /// `keep_from`: a commit never evicts its own writes, which are
    /// acknowledged once it returns.
    pub(super) fn evict_oldest(&mut self, target: u64, keep_from: u64, limit: u64) -> Result<u64> {
        let mut evicted = 0;
        while self.totals.bytes > target && evicted < limit {
            let Some(seq) = self
                .by_seq
                .first()
                .map_err(Error::storage)?
                .map(|(k, _)| k.value())
                .filter(|seq| *seq < keep_from)
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
        checkpoint: get(WAL_POSITION)?,
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
