//! The write-ahead log in front of redb (ARCHITECTURE.md §2, §3).
//!
//! A group commit is acknowledged once it is appended here as one record
//! and the segment is `fdatasync`ed: one sequential append per group,
//! where a durable redb commit rewrites the B-tree pages of every table it
//! touches with two syncs. redb then gets the same group with
//! `Durability::None`, and a periodic durable commit (the checkpoint)
//! records the log position it covers; older segments are then removed.
//!
//! Layout: `wal/<start>.log` in the data dir, `<start>` the 16-digit hex
//! log position of the segment's first byte (a position counts bytes over
//! all segments, so it names a record in any segment). A record is
//! `length (u32 LE) | crc32c of the payload (u32 LE) | payload`. Reading
//! stops at the first record that is torn (runs past the end) or corrupt
//! (checksum or length wrong): a crash can only tear the last append, which
//! was never acknowledged. The log is cut back to the last good record
//! and any later segment is removed, so appends continue after good data.
//!
//! Every write and sync goes through the full-disk switch of
//! [`crate::store::fault`], the seam redb's file goes through too.
//!
//! A hand-written log rather than `okaywal`: that crate is pre-1.0 with an
//! unstable format, checkpoints from its own thread through its callback
//! (here the group-commit writer must own every redb commit), and does its
//! own I/O outside the storage seam. This one is a file per segment, one
//! `pwrite` and one `fdatasync` per group.

use std::{
    fs::{self, File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use crate::{
    error::{Error, Result},
    store::fault::{self, DiskFull},
};

/// Bytes of a record's frame before its payload.
const FRAME: usize = 8;

/// What a replay found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Records (group commits) handed to the caller.
    pub records: u64,
    /// Whether reading stopped at a torn or corrupt record.
    pub cut: bool,
}

/// The log: its segments and the one appends go to.
pub(super) struct Wal {
    dir: PathBuf,
    fault: Option<DiskFull>,
    /// Where appends go; set by the first [`Wal::replay`].
    tail: Option<Tail>,
    frame: Vec<u8>,
}

impl Wal {
    /// The log in `dir/wal`; [`Wal::replay`] reads it and readies appends.
    pub fn open(dir: &Path, fault: Option<DiskFull>) -> Result<Wal> {
        let dir = dir.join("wal");
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, &e))?;
        Ok(Wal {
            dir,
            fault,
            tail: None,
            frame: Vec::new(),
        })
    }

    /// Hand every good record at or after position `from` to `apply`, in
    /// order; appends then continue after the last good record. Segments
    /// wholly before `from` are removed, and so is everything after a torn
    /// or corrupt record. Also repairs the tail after a failed append.
    pub fn replay(
        &mut self,
        from: u64,
        apply: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Replayed> {
        let (tail, replayed) = scan(&self.dir, from, self.fault.as_ref(), apply)?;
        self.tail = Some(tail);
        Ok(replayed)
    }

    /// Append the payload `fill` writes (if it writes one: it returns
    /// false when there is nothing to log) as one record, and sync it:
    /// durable once this returns true. After a failure the tail may hold
    /// part of it; [`Wal::replay`] cuts it off.
    pub fn append(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> bool) -> Result<bool> {
        let Some(tail) = self.tail.as_mut() else {
            return Err(Error::Storage("the write-ahead log is not open".into()));
        };
        self.frame.clear();
        self.frame.extend_from_slice(&[0; FRAME]);
        if !fill(&mut self.frame) {
            return Ok(false);
        }
        let payload = &self.frame[FRAME..];
        let Ok(len) = u32::try_from(payload.len()) else {
            return Err(Error::Storage(
                "a write group of 4 GiB or more does not fit one log record".into(),
            ));
        };
        let header = [len.to_le_bytes(), crc32c::crc32c(payload).to_le_bytes()];
        self.frame[..FRAME].copy_from_slice(header.as_flattened());
        let offset = tail.end - tail.start;
        let fault = self.fault.as_ref();
        fault::check(fault)
            .and_then(|()| tail.file.write_all_at(&self.frame, offset))
            .and_then(|()| fault::check(fault))
            .and_then(|()| tail.file.sync_data())
            .map_err(|e| {
                // Its writers are told it failed: take back what reached the
                // file, so a replay cannot bring it back (best effort; the
                // replay on recovery cuts a torn tail anyway).
                let _ = fault::check(fault).and_then(|()| tail.file.set_len(offset));
                Error::Storage(format!("write-ahead log append failed: {e}"))
            })?;
        tail.end += self.frame.len() as u64;
        Ok(true)
    }

    /// Position after the last record.
    pub fn end(&self) -> u64 {
        self.tail.as_ref().map_or(0, |t| t.end)
    }

    /// Send further appends to a new segment starting at [`Wal::end`],
    /// unless the current one is empty.
    pub fn rotate(&mut self) -> Result<()> {
        if let Some(tail) = self.tail.as_mut().filter(|t| t.end > t.start) {
            tail.file = open_segment(&self.dir, tail.end, self.fault.as_ref())?;
            tail.start = tail.end;
        }
        Ok(())
    }

    /// Remove the segments before the current one (a checkpoint covers
    /// them). A segment left behind is removed by the next replay.
    pub fn remove_old(&self) {
        let Some(tail) = &self.tail else { return };
        for start in segments(&self.dir).unwrap_or_default() {
            if start < tail.start {
                remove(&self.dir, start);
            }
        }
    }
}

/// The segment appends go to after a scan, and the position after its
/// last good record.
struct Tail {
    file: File,
    start: u64,
    end: u64,
}

/// Read the log from `from` (see [`Wal::replay`]).
fn scan(
    dir: &Path,
    from: u64,
    fault: Option<&DiskFull>,
    mut apply: impl FnMut(&[u8]) -> Result<()>,
) -> Result<(Tail, Replayed)> {
    let mut list = segments(dir)?;
    // The last segment starting at or before `from` holds it.
    let first = list.iter().rposition(|s| *s <= from).unwrap_or(0);
    for stale in list.drain(..first) {
        remove(dir, stale);
    }
    let mut replayed = Replayed::default();
    // (index, start, good bytes, file length) of the last segment read.
    let mut last = None;
    let mut end = from;
    for (i, &start) in list.iter().enumerate() {
        // Each segment starts where the one before ended; a gap means
        // what follows cannot be applied in order.
        if (i == 0 && start > from) || (i > 0 && start != end) {
            replayed.cut = true;
            break;
        }
        let path = segment_path(dir, start);
        let bytes = fs::read(&path).map_err(|e| io_error(&path, &e))?;
        let mut at = 0;
        while at < bytes.len() {
            let Some(payload) = record_at(&bytes, at) else {
                replayed.cut = true;
                break;
            };
            if start + at as u64 >= from {
                apply(payload)?;
                replayed.records += 1;
            }
            at += FRAME + payload.len();
        }
        end = start + at as u64;
        last = Some((i, start, at as u64, bytes.len() as u64));
        if replayed.cut {
            break;
        }
    }
    let keep = last.map_or(0, |(i, ..)| i + 1);
    for later in list.drain(keep..) {
        remove(dir, later);
    }
    match last {
        Some((_, start, good, len)) if start + good >= from => {
            let path = segment_path(dir, start);
            let file = open_file(&path, false, fault)?;
            if good < len {
                fault::check(fault)
                    .and_then(|()| file.set_len(good))
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_error(&path, &e))?;
            }
            Ok((Tail { file, start, end }, replayed))
        }
        // No segment holds `from` (a new log, or one whose segments were
        // lost): start one there.
        _ => {
            let file = open_segment(dir, from, fault)?;
            let tail = Tail {
                file,
                start: from,
                end: from,
            };
            Ok((tail, replayed))
        }
    }
}

/// Start positions of the segments in `dir`, in order.
fn segments(dir: &Path) -> Result<Vec<u64>> {
    let list = fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
    let mut starts: Vec<u64> = list
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let hex = name.to_str()?.strip_suffix(".log")?;
            u64::from_str_radix(hex, 16).ok()
        })
        .collect();
    starts.sort_unstable();
    Ok(starts)
}

fn remove(dir: &Path, start: u64) {
    let path = segment_path(dir, start);
    if let Err(e) = fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a write-ahead log segment");
    }
}

/// The payload of the record at `at`, if it is whole and intact.
fn record_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let header = bytes.get(at..at + FRAME)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    // Never written: a zero-filled tail would otherwise read as records.
    if len == 0 {
        return None;
    }
    let payload = bytes.get(at + FRAME..at + FRAME + len)?;
    (crc32c::crc32c(payload) == crc).then_some(payload)
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:016x}.log"))
}

/// Open (creating it if needed) the segment starting at `start`, and make
/// its directory entry durable: records synced into it must not vanish
/// with the file.
fn open_segment(dir: &Path, start: u64, fault: Option<&DiskFull>) -> Result<File> {
    let path = segment_path(dir, start);
    let file = open_file(&path, true, fault)?;
    fault::check(fault)
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(|e| io_error(dir, &e))?;
    Ok(file)
}

fn open_file(path: &Path, create: bool, fault: Option<&DiskFull>) -> Result<File> {
    if create {
        fault::check(fault).map_err(|e| io_error(path, &e))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Storage(format!("write-ahead log {}: {e}", path.display()))
}
