//! A seam for fault injection: the disk tier's files (redb's and the
//! write-ahead log's) behind a switch that
//! makes every write fail the way a full disk does (`ENOSPC`), so tests can
//! show that a failed commit answers its writers with an error, loses no
//! acknowledged write, leaves reads working and is recovered from in
//! process once the switch is off.

use std::{
    io,
    ops::Bound,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use redb::{backends::FileBackend, BackendError, StorageBackend};

/// Flip to `true` to make the disk "full".
pub type DiskFull = Arc<AtomicBool>;

/// redb's file backend, with writes that fail while the switch is on.
/// The disk tier always opens its file through this (with no switch in
/// production), so the tested path is the production path.
#[derive(Debug)]
pub struct Switchable {
    inner: FileBackend,
    full: Option<DiskFull>,
}

impl Switchable {
    pub fn new(inner: FileBackend, full: Option<DiskFull>) -> Switchable {
        Switchable { inner, full }
    }

    fn check(&self) -> io::Result<()> {
        check(self.full.as_ref())
    }
}

/// Fail as a full disk does while the switch (if any) is on; every write
/// and sync of the disk tier's files calls this first.
pub(crate) fn check(full: Option<&DiskFull>) -> io::Result<()> {
    if full.is_some_and(|f| f.load(Ordering::SeqCst)) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            "no space left on device (injected)",
        ));
    }
    Ok(())
}

impl StorageBackend for Switchable {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
