//! The redb file under a lock, so the tier can replace or compact its
//! database in place.
//!
//! Reads and commits take the lock shared; [`DbFile::reopen`] and
//! [`DbFile::compact`] take it exclusively, which is what redb needs:
//! after a failed commit a `Database` refuses every later write
//! (`PreviousIo`) until it is closed and opened again, and
//! `Database::compact` needs `&mut` with no transaction alive.
//!
//! A reopen drops the failed database only once a probe write (a few
//! pages, synced, through the same storage backend) succeeds: until then
//! the failed handle stays in place and keeps serving what redb can still
//! read, and the file is never left without a database while the disk is
//! still full. If the open fails anyway, the tier has no database until
//! the next attempt: disk reads and writes fail, memory reads go on.

use std::path::{Path, PathBuf};

use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};
use redb::{backends::FileBackend, Database, StorageBackend};

use super::super::fault::{DiskFull, Switchable};
use crate::error::{Error, Result};

/// redb's page cache; its default (1 GiB) is too much for a sidecar.
const PAGE_CACHE: usize = 64 << 20;
/// Bytes the probe writes: enough pages for a small commit.
const PROBE_BYTES: usize = 64 << 10;

/// The database file of the disk tier.
pub(super) struct DbFile {
    path: PathBuf,
    fault: Option<DiskFull>,
    /// `None` after a reopen whose open failed.
    db: RwLock<Option<Database>>,
}

impl DbFile {
    /// Open (or create) `dir/infercache.redb`.
    pub fn open(dir: &Path, fault: Option<DiskFull>) -> Result<DbFile> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("infercache.redb");
        let db = create(&path, fault.as_ref())?;
        Ok(DbFile {
            path,
            fault,
            db: RwLock::new(Some(db)),
        })
    }

    /// The database, shared: commits and reads run under this guard.
    pub fn db(&self) -> Result<MappedRwLockReadGuard<'_, Database>> {
        RwLockReadGuard::try_map(self.db.read(), Option::as_ref).map_err(|_| {
            Error::Storage("the disk tier is closed after a write failure; reopening".into())
        })
    }

    /// The file's length: what the volume sees.
    pub fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Close the database and open it again, once a probe write shows the
    /// storage takes writes again; `init` runs on the new database before
    /// anyone else sees it. The exclusive lock waits for reads in progress
    /// and holds new ones for the few milliseconds an open takes.
    pub fn reopen<T>(&self, init: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        self.probe()?;
        let mut slot = self.db.write();
        // Closing a failed database cannot write its shutdown header; the
        // next open repairs from the allocator state saved by the last
        // successful commit (quick repair), in milliseconds.
        drop(slot.take());
        let db = create(&self.path, self.fault.as_ref())?;
        let done = init(&db)?;
        *slot = Some(db);
        Ok(done)
    }

    /// Compact the file (moves pages down, then truncates the free tail),
    /// holding every reader and the writer off meanwhile.
    pub fn compact(&self) -> Result<()> {
        let mut slot = self.db.write();
        let Some(db) = slot.as_mut() else {
            return Ok(());
        };
        db.compact().map(drop).map_err(Error::storage)
    }

    /// Write and sync a few pages next to the database, through the same
    /// kind of backend, then remove them.
    fn probe(&self) -> Result<()> {
        let path = self.path.with_extension("probe");
        let result = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|file| backend(file, self.fault.as_ref()))
            .and_then(|probe| {
                probe.set_len(PROBE_BYTES as u64)?;
                probe.write(0, &vec![0xA5; PROBE_BYTES])?;
                probe.sync_data()?;
                probe.close()
            });
        // The probe file holds nothing; a stale one is simply overwritten.
        let _ = std::fs::remove_file(&path);
        result.map_err(|e| Error::Storage(format!("the disk still refuses writes: {e}")))
    }
}

/// redb's file backend, behind the full-disk switch when one is given.
fn backend(file: std::fs::File, fault: Option<&DiskFull>) -> std::io::Result<Switchable> {
    let file = FileBackend::new(file).map_err(std::io::Error::other)?;
    Ok(Switchable::new(file, fault.cloned()))
}

fn create(path: &Path, fault: Option<&DiskFull>) -> Result<Database> {
    let cannot =
        |e: &dyn std::fmt::Display| Error::Storage(format!("cannot open {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| cannot(&e))?;
    let mut builder = Database::builder();
    builder.set_cache_size(PAGE_CACHE);
    builder
        .create_with_backend(backend(file, fault).map_err(|e| cannot(&e))?)
        .map_err(|e| cannot(&e))
}
