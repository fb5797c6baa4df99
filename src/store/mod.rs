//! The local tiers: memory (moka) and disk (redb), kept in step by the
//! group-commit [`writer`].
//!
//! This module stores; it does not decide how a read walks the tiers. The
//! read path (lookup order, promotion, write-back, the fences that make
//! removals win races, the hit and miss counters) is `crate::memo`, which
//! drives these engines as two tiers of its chain (ARCHITECTURE.md §1).
//!
//! Every change to disk goes through the writer, which commits in groups
//! and then, in log order, tells the read path's fences ([`CommitFence`])
//! and applies the change to memory: a KV write or a removal reaches
//! memory once its log record is synced (redb takes it just after; the
//! disk tier answers from its overlay meanwhile); a computed result is
//! already in memory (the read path put it there when it landed), so its
//! commit only bumps the fence. The two tiers never disagree about a key
//! for longer than a commit.

pub mod disk;
mod entry;
pub mod fault;
pub mod memory;
pub(crate) mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::{path::PathBuf, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use self::{
    disk::{DiskTier, Op},
    memory::MemoryTier,
    writer::{Batching, Targets, Writer},
};
use crate::{
    error::{Error, Limit, Result},
    events::Events,
};

/// Namespace of the plain key-value API.
pub const KV_NAMESPACE: u32 = 0;

pub(crate) use self::entry::KeyRef;
pub use self::entry::{Clock, Entry, Key, Usage};
pub(crate) use self::writer::CommitFence;
pub use crate::limits::TTL_RANGE;

/// How to open a [`crate::Store`]. `Default` is the server's embedded default.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub memory_capacity: u64,
    pub disk_capacity: u64,
    pub max_value_size: u64,
    pub write_queue: usize,
    pub write_batch: usize,
    pub write_delay: Duration,
    pub sweep_interval: Duration,
    /// Fault injection, with the `testing` feature only: while the switch
    /// is on, disk writes fail as on a full disk.
    #[cfg(feature = "testing")]
    pub disk_full: Option<fault::DiskFull>,
    /// The shared tier behind disk (`memo/shared/`); `None`: none.
    pub shared: Option<SharedOptions>,
}

/// Where the shared tier is and how long to wait on it (README: Running a
/// fleet). Its `Debug` never shows a password.
#[derive(Debug, Clone)]
pub struct SharedOptions {
    pub url: crate::config::SharedUrl,
    pub cluster: bool,
    /// Longest wait of one request on Redis.
    pub timeout: Duration,
    /// Lifetime of shared entries; `None` leaves it to Redis's eviction.
    pub ttl: Option<Duration>,
    /// Larger values stay in the local tiers.
    pub max_value: u64,
}

impl Default for StoreOptions {
    /// The server's embedded defaults (README, Configuration), kept
    /// here so the store needs no config; a test in `server.rs` checks
    /// they agree.
    fn default() -> Self {
        StoreOptions {
            dir: "./infercache-data".into(),
            memory_capacity: 256 << 20,
            disk_capacity: 4 << 30,
            max_value_size: 16 << 20,
            write_queue: 16384,
            write_batch: 1024,
            write_delay: Duration::ZERO,
            sweep_interval: Duration::from_secs(30),
            #[cfg(feature = "testing")]
            disk_full: None,
            shared: None,
        }
    }
}

/// The two local tiers and their writer. Cheap to clone; all clones share
/// one database.
#[derive(Clone)]
pub(crate) struct Local {
    inner: Arc<Inner>,
}

struct Tasks {
    writer: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    indexer: JoinHandle<()>,
}

struct Inner {
    memory: MemoryTier,
    disk: Arc<DiskTier>,
    writer: Writer,
    clock: Clock,
    /// Changes with live reloads.
    max_value_size: AtomicU64,
    events: Events,
    healthy: Arc<AtomicBool>,
    /// Background tasks, taken by `close`.
    tasks: Mutex<Option<Tasks>>,
}

impl Local {
    /// Open the tiers in `options.dir` and start the writer and sweeper;
    /// every commit bumps `fences` before it touches memory, and changes
    /// are reported to `events`. Must be called inside a tokio runtime.
    pub(crate) async fn open(
        options: StoreOptions,
        fences: Arc<dyn CommitFence>,
        events: Events,
    ) -> Result<Local> {
        let clock = Clock::new();
        let dir = options.dir.clone();
        let disk_clock = clock.clone();
        #[cfg(feature = "testing")]
        let fault = options.disk_full.clone();
        #[cfg(not(feature = "testing"))]
        let fault = None;
        let disk = tokio::task::spawn_blocking(move || {
            DiskTier::open_with(&dir, options.disk_capacity, disk_clock, fault)
        })
        .await
        .map_err(|e| Error::Storage(format!("opening the disk tier panicked: {e}")))??;
        let disk = Arc::new(disk);
        let indexed = Arc::downgrade(&disk);
        let indexer = tokio::task::spawn_blocking(move || {
            if let Err(e) = DiskTier::index_keys(indexed) {
                tracing::warn!(error = %e, "indexing the keys on disk failed; every miss probes the disk");
            }
        });
        let memory = MemoryTier::new(options.memory_capacity, clock.clone(), events.clone());
        let healthy = Arc::new(AtomicBool::new(true));
        let (writer, writer_task) = Writer::spawn(
            Targets {
                healthy: healthy.clone(),
                disk: disk.clone(),
                memory: memory.clone(),
                fences,
                events: events.clone(),
            },
            Batching {
                queue: options.write_queue,
                max_batch: options.write_batch,
                max_delay: options.write_delay,
            },
        );
        let sweeper = tokio::spawn(sweep_forever(writer.clone(), options.sweep_interval));
        Ok(Local {
            inner: Arc::new(Inner {
                memory,
                disk,
                writer,
                clock,
                max_value_size: AtomicU64::new(options.max_value_size),
                events,
                healthy,
                tasks: Mutex::new(Some(Tasks {
                    writer: writer_task,
                    sweeper,
                    indexer,
                })),
            }),
        })
    }

    /// The memory tier.
    pub(crate) fn memory(&self) -> &MemoryTier {
        &self.inner.memory
    }

    /// The live entry under `key` on disk (read on a blocking thread).
    pub(crate) async fn read(&self, key: &Key) -> Result<Option<Entry>> {
        // A write the log holds and redb not yet: answered without a probe.
        if let Some(logged) = self.inner.disk.logged(key) {
            return Ok(logged);
        }
        if !self.inner.disk.may_hold(key) {
            return Ok(None);
        }
        let (disk, key) = (self.inner.disk.clone(), key.clone());
        tokio::task::spawn_blocking(move || disk.get(&key))
            .await
            .map_err(|e| Error::Storage(format!("disk read panicked: {e}")))?
    }

    /// Queue `op` and wait until it is committed (and applied to memory).
    /// Returns how many entries it wrote or removed.
    pub(crate) async fn write(&self, op: Op) -> Result<u64> {
        self.inner.writer.write(op).await
    }

    /// Queue a put whose entry the caller has already put in memory (see
    /// [`Writer::persist`]); the future answers once it is committed.
    pub(crate) fn persist(
        &self,
        key: Key,
        entry: Entry,
    ) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
        let committed = self.inner.writer.persist(Op::Put { key, entry })?;
        Ok(async move { committed.await.map(drop) })
    }

    /// Refuse an entry larger than `max_value_size` or than the disk tier
    /// can hold.
    pub(crate) fn check_size(&self, key: &Key, entry: &Entry) -> Result<()> {
        let limit = self.max_value_size();
        if entry.value.len() as u64 > limit {
            return Err(Error::TooLarge {
                limit,
                over: Limit::ValueSize,
            });
        }
        self.inner.disk.check_fits(key, entry)
    }

    /// The disk namespace number of a model name (stable across restarts).
    pub(crate) async fn namespace(&self, name: &str) -> Result<u32> {
        let (disk, name) = (self.inner.disk.clone(), name.to_string());
        tokio::task::spawn_blocking(move || disk.namespace(&name))
            .await
            .map_err(|e| Error::Storage(format!("namespace lookup panicked: {e}")))?
    }

    /// Current usage of (memory, disk).
    pub(crate) fn usage(&self) -> (Usage, Usage) {
        let (entries, bytes) = self.inner.memory.usage();
        let memory = Usage { entries, bytes };
        let (entries, bytes) = self.inner.disk.usage();
        (memory, Usage { entries, bytes })
    }

    /// False while disk commits fail (see `Store::disk_healthy`).
    pub(crate) fn disk_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    pub(crate) fn events(&self) -> &Events {
        &self.inner.events
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub(crate) fn max_value_size(&self) -> u64 {
        self.inner.max_value_size.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_value_size(&self, limit: u64) {
        self.inner.max_value_size.store(limit, Ordering::Relaxed);
    }

    /// Commit every queued write and stop the background tasks. The redb
    /// file is closed cleanly when the last clone is dropped.
    pub(crate) async fn close(&self) {
        self.inner.writer.close().await;
        let Some(tasks) = self.inner.tasks.lock().take() else {
            return;
        };
        tasks.sweeper.abort();
        // Stops within one chunk, and lets go of the file.
        self.inner.disk.stop_indexing();
        let _ = tasks.indexer.await;
        // The writer ends once it has committed what was queued.
        if let Err(e) = tasks.writer.await {
            tracing::error!(error = %e, "the disk writer ended abnormally");
        }
    }
}

/// Ask the writer to sweep expired entries at once and then now and then;
/// sweep again at once while a sweep hits its per-transaction limit. The
/// first sweep is queued when the task first runs, not by a timer.
async fn sweep_forever(writer: Writer, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Ok(swept) = writer.write(Op::Sweep).await {
            if swept < disk::SWEEP_LIMIT as u64 {
                break;
            }
        }
        tick.tick().await;
    }
}
