//! The two-tier cache: memory (moka) in front of disk (redb).
//!
//! Read path: memory, then disk; a disk hit is promoted to memory. Write
//! path: every change to disk goes through the group-commit [`writer`],
//! which mirrors committed changes into memory in commit order, so the two
//! tiers never disagree about a key for longer than a commit.
//!
//! Removals win every race: a promotion (read an old value from disk while
//! a delete commits) and a computation landing while its model's cache is
//! dropped are both checked, at the moment they would publish, against the
//! counters in [`fence`].

pub mod disk;
pub mod fault;
pub mod fence;
pub mod memory;
pub mod writer;

#[cfg(test)]
mod races;

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use self::{
    disk::{DiskTier, Op},
    fence::{Fences, Generations},
    memory::MemoryTier,
    writer::{Batching, Targets, Writer},
};
use crate::{
    error::{Error, Result},
    events::Events,
    metrics::CacheMetrics,
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

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Disk,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
        }
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
        }
    }
}

/// Entries and bytes held by one tier.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

/// The two-tier cache. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
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
    fences: Arc<Fences>,
    generations: Generations,
    clock: Clock,
    /// Changes with live reloads.
    max_value_size: AtomicU64,
    metrics: CacheMetrics,
    events: Events,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    /// Background tasks, taken by `close`.
    tasks: Mutex<Option<Tasks>>,
    /// Hold a promotion after its disk read and after its memory insert.
    #[cfg(test)]
    promotion: [fence::Gate; 2],
}

impl Store {
    /// Open the store in `options.dir` and start its writer and sweeper.
    /// Must be called inside a tokio runtime.
    pub async fn open(options: StoreOptions) -> Result<Store> {
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
        let fences = Arc::new(Fences::new());
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (writer, writer_task) = Writer::spawn(
            Targets {
                healthy: healthy.clone(),
                disk: disk.clone(),
                memory: memory.clone(),
                fences: fences.clone(),
                events: events.clone(),
            },
            Batching {
                queue: options.write_queue,
                max_batch: options.write_batch,
                max_delay: options.write_delay,
            },
        );
        let sweeper = tokio::spawn(sweep_forever(writer.clone(), options.sweep_interval));
        Ok(Store {
            inner: Arc::new(Inner {
                memory,
                disk,
                writer,
                fences,
                generations: Generations::default(),
                clock,
                max_value_size: AtomicU64::new(options.max_value_size),
                metrics: CacheMetrics::default(),
                events,
                healthy,
                tasks: Mutex::new(Some(Tasks {
                    writer: writer_task,
                    sweeper,
                })),
                #[cfg(test)]
                promotion: Default::default(),
            }),
        })
    }

    /// The live entry under `key` in the memory tier (counted as a hit).
    pub fn get_memory(&self, key: &Key) -> Option<Entry> {
        let entry = self.inner.memory.get(key)?;
        self.inner.metrics.hit(Tier::Memory);
        Some(entry)
    }

    /// The live entry under `key` and the tier that held it.
    pub async fn get(&self, key: &Key) -> Result<Option<(Entry, Tier)>> {
        let inner = &self.inner;
        if let Some(entry) = self.get_memory(key) {
            return Ok(Some((entry, Tier::Memory)));
        }
        let fence = inner.fences.read(key);
        let disk = inner.disk.clone();
        let owned = key.clone();
        let found = tokio::task::spawn_blocking(move || disk.get(&owned))
            .await
            .map_err(|e| Error::Storage(format!("disk read panicked: {e}")))??;
        let Some(entry) = found else {
            return Ok(None);
        };
        #[cfg(test)]
        inner.promotion[0].pass().await;
        // If a write to this key committed while we read, our copy may be
        // older than it (or deleted): leave memory to the writer. The read
        // itself began before that write was acknowledged, so answering it
        // is still in order.
        inner.fences.publish_if(key, fence, || {
            inner.memory.insert(key.clone(), entry.clone());
        });
        #[cfg(test)]
        inner.promotion[1].pass().await;
        inner.metrics.hit(Tier::Disk);
        Ok(Some((entry, Tier::Disk)))
    }

    /// Store `entry` in both tiers; returns once it is durable on disk.
    pub async fn put(&self, key: Key, entry: Entry) -> Result<()> {
        self.check_size(&key, &entry)?;
        self.inner
            .writer
            .write(Op::Put { key, entry })
            .await
            .map(drop)
    }

    /// Publish a result computed under `generation` of its namespace (see
    /// [`Store::generation`]): into memory at once and onto the write
    /// queue, unless the namespace was dropped since, in which case nothing
    /// is published and `None` returned. The future answers once the write
    /// is durable (or refused: too large, queue full).
    pub(crate) fn land(
        &self,
        key: Key,
        entry: Entry,
        generation: u64,
    ) -> Option<impl Future<Output = Result<()>>> {
        let inner = &self.inner;
        inner.generations.publish_if(key.namespace, generation, || {
            let queued = self.check_size(&key, &entry).and_then(|()| {
                inner.memory.insert(key.clone(), entry.clone());
                // The commit bumps the key's fence but does not insert
                // the entry into memory a second time.
                inner.writer.persist(Op::Put { key, entry })
            });
            async move { queued?.await.map(drop) }
        })
    }

    /// The namespace's generation: read it before computing a result, and
    /// hand it to [`Store::land`].
    pub(crate) fn generation(&self, namespace: u32) -> u64 {
        self.inner.generations.current(namespace)
    }

    /// A number that changes whenever a write to `key` commits. Read it
    /// before looking in the tiers; if it changed by the time the caller
    /// decides to compute, a result was stored meanwhile.
    pub(crate) fn fence(&self, key: &Key) -> u64 {
        self.inner.fences.read(key)
    }

    /// Remove `key` from both tiers; returns once the removal is durable.
    /// Returns whether the disk tier held it.
    pub async fn delete(&self, key: Key) -> Result<bool> {
        self.inner.memory.remove(&key);
        let removed = self.inner.writer.write(Op::Delete { key }).await?;
        Ok(removed > 0)
    }

    /// The disk namespace number of a model name (stable across restarts).
    pub async fn namespace(&self, name: &str) -> Result<u32> {
        let (disk, name) = (self.inner.disk.clone(), name.to_string());
        tokio::task::spawn_blocking(move || disk.namespace(&name))
            .await
            .map_err(|e| Error::Storage(format!("namespace lookup panicked: {e}")))?
    }

    /// Remove every entry of one namespace from both tiers; returns how
    /// many the disk tier held. A result being computed meanwhile is not
    /// stored when it lands.
    pub async fn drop_namespace(&self, namespace: u32) -> Result<u64> {
        // Bump first: a result that landed before is in memory (removed
        // below) and queued ahead of the drop (removed by it on disk); one
        // landing after sees the new generation and publishes nothing.
        self.inner.generations.bump(namespace);
        self.inner.memory.remove_namespace(namespace);
        self.inner.writer.write(Op::DropNamespace(namespace)).await
    }

    /// Current usage of (memory, disk).
    pub fn usage(&self) -> (Usage, Usage) {
        let (entries, bytes) = self.inner.memory.usage();
        let memory = Usage { entries, bytes };
        let (entries, bytes) = self.inner.disk.usage();
        (memory, Usage { entries, bytes })
    }

    /// Hit and miss counters.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// False from a failed disk commit (e.g. a full disk) until the writer
    /// has reopened the database, which it retries with backoff; writes are
    /// refused meanwhile and `/healthz` reports it. Reads keep working.
    pub fn disk_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    /// The cache event stream (also fed by the model batchers).
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The store's clock (Unix milliseconds, following tokio's time).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn max_value_size(&self) -> u64 {
        self.inner.max_value_size.load(Ordering::Relaxed)
    }

    /// Apply a reloaded `max_value_size`.
    pub fn set_max_value_size(&self, limit: u64) {
        self.inner.max_value_size.store(limit, Ordering::Relaxed);
    }

    /// Commit every queued write and stop the background tasks. The redb
    /// file is closed cleanly when the last clone of the store is dropped.
    pub async fn close(&self) {
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

    fn check_size(&self, key: &Key, entry: &Entry) -> Result<()> {
        let limit = self.max_value_size();
        if entry.value.len() as u64 > limit {
            return Err(Error::TooLarge { limit });
        }
        self.inner.disk.check_fits(key, entry)
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
