//! The local tiers: memory (moka) and disk (redb), kept in step by the
//! group-commit [`writer`].
//!
//! This module stores; it does not decide how a read walks the tiers. The
//! read path (lookup order, promotion, write-back, the fences that make
//! removals win races, the hit and miss counters) is `crate::memo`, which
//! drives these engines as two tiers of its chain (ARCHITECTURE.md §1).
//!
//! Every change to disk goes through the writer, which commits in groups
//! and then applies the same changes to memory in commit order, telling
//! the read path's fences first ([`CommitFence`]), so the two tiers never
//! disagree about a key for longer than a commit.

pub mod disk;
pub mod fault;
pub mod memory;
pub(crate) mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use self::{
    disk::{DiskTier, Op},
    memory::MemoryTier,
    writer::{Batching, Targets, Writer},
};
use crate::{
    error::{Error, Result},
    events::Events,
};

/// Namespace of the plain key-value API.
pub const KV_NAMESPACE: u32 = 0;

pub use crate::limits::TTL_RANGE;

/// A cache key: a namespace (0 for the KV API, one per model) and bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: u32,
    pub id: Bytes,
}

impl Key {
    pub fn new(namespace: u32, id: impl AsRef<[u8]>) -> Key {
        Key {
            namespace,
            id: Bytes::copy_from_slice(id.as_ref()),
        }
    }
}

/// A cached value with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub content_type: Option<Arc<str>>,
    /// Absolute deadline in Unix milliseconds; `None` lives until evicted.
    pub expires_at: Option<u64>,
}

impl Entry {
    /// An entry that lives until evicted.
    pub fn new(value: impl Into<Bytes>) -> Entry {
        Entry {
            value: value.into(),
            content_type: None,
            expires_at: None,
        }
    }

    /// Whether the deadline has passed; reads the clock only for entries
    /// that have a deadline.
    pub fn is_expired(&self, clock: &Clock) -> bool {
        matches!(self.expires_at, Some(at) if at <= clock.now_ms())
    }
}

/// Wall-clock milliseconds that follow tokio's clock: anchored to the
/// system time once, then advanced by `tokio::time::Instant`, so tests can
/// move time with `tokio::time::pause`/`advance` while deadlines stay
/// meaningful across restarts.
#[derive(Debug, Clone)]
pub struct Clock {
    anchor_ms: u64,
    anchor: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let anchor_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            anchor_ms,
            anchor: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.anchor_ms.saturating_add(elapsed)
    }

    /// The deadline `ttl` from now, for [`Entry::expires_at`]; a lifetime
    /// too long to represent saturates (it lives until evicted).
    pub fn deadline(&self, ttl: Duration) -> u64 {
        u64::try_from(ttl.as_millis()).map_or(u64::MAX, |ms| self.now_ms().saturating_add(ms))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// How to open a [`Store`]. `Default` is the server's embedded default.
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
    /// Fault injection: while the switch is on, disk writes fail as on a
    /// full disk. `None` in production.
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
            write_queue: 4096,
            write_batch: 1024,
            write_delay: Duration::ZERO,
            sweep_interval: Duration::from_secs(30),
            disk_full: None,
            shared: None,
        }
    }
}

/// Entries and bytes held by one tier.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

/// Told of every committed change to a key, before the writer applies it
/// to memory. The read path's fences implement it (`memo::fence`): a
/// promotion that read a key while a change to it committed sees the bump
/// and publishes nothing.
pub(crate) trait CommitFence: Send + Sync {
    /// A change to `key` committed.
    fn bump(&self, key: &Key);
    /// Changes to many keys committed (a namespace drop).
    fn bump_all(&self);
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
    /// every commit bumps `fences` before it touches memory. Must be called
    /// inside a tokio runtime.
    pub(crate) async fn open(options: StoreOptions, fences: Arc<dyn CommitFence>) -> Result<Local> {
        let clock = Clock::new();
        let dir = options.dir.clone();
        let disk_clock = clock.clone();
        let fault = options.disk_full.clone();
        let disk = tokio::task::spawn_blocking(move || {
            DiskTier::open_with(&dir, options.disk_capacity, disk_clock, fault)
        })
        .await
        .map_err(|e| Error::Storage(format!("opening the disk tier panicked: {e}")))??;
        let disk = Arc::new(disk);
        let events = Events::default();
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
            return Err(Error::TooLarge { limit });
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
        // The writer ends once it has committed what was queued.
        if let Err(e) = tasks.writer.await {
            tracing::error!(error = %e, "the disk writer ended abnormally");
        }
    }
}

/// Ask the writer to sweep expired entries now and then; sweep again at
/// once while a sweep hits its per-transaction limit.
async fn sweep_forever(writer: Writer, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while let Ok(swept) = writer.write(Op::Sweep).await {
            if swept < disk::SWEEP_LIMIT as u64 {
                break;
            }
        }
    }
}
