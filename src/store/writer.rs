//! Group-commit writer: the only code that writes to the disk tier.
//!
//! Writes arrive on a bounded mpsc queue. A `select!` loop gathers them
//! until `write_batch` entries are waiting or `write_delay` has passed, then
//! commits the whole group in two steps on blocking threads: one
//! write-ahead log record and one `fdatasync` ([`DiskTier::log`]), so
//! concurrent writers share one fsync, then a redb transaction that need
//! not sync ([`DiskTier::apply_logged`]). The two overlap across groups:
//! while one group is in redb the next is being logged, and redb takes the
//! groups in log order.
//!
//! A group is visible once it is logged (ARCHITECTURE.md §2, "Write
//! path"): right after the sync the writer applies its changes to the
//! memory tier, in queue order, bumping the key's fence ([`CommitFence`])
//! first, so a reader promoting an older disk value at the same moment can
//! tell and undo it; then it answers the group's puts. The disk tier's
//! reads answer from its overlay of logged ops until redb has them.
//! Deletes, drops and sweeps are answered after the redb commit, which
//! counts what they removed. A full queue is refused at once
//! (`Error::Overloaded`, HTTP 429).
//!
//! The writer also keeps the disk tier in shape between groups, once the
//! last one is through redb: when a commit left the file above
//! `disk_capacity` it runs [`DiskTier::fit`] (compaction needs redb to
//! itself, and only the writer can guarantee no commit is running), when
//! the log is long enough it runs [`DiskTier::checkpoint`] (and once more
//! when it stops, so a clean restart replays nothing), and after a failed
//! commit it retries [`DiskTier::recover`] with backoff ([`RETRY_FIRST`]
//! doubling up to [`RETRY_MAX`]) until the database is reopened. Writes
//! arriving meanwhile are refused at once with an error, never
//! acknowledged.

use std::{
    future::Future,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    disk::{Applied, DiskTier, Logged, Op},
    entry::Key,
    memory::MemoryTier,
};
use crate::{
    error::{Error, Result},
    events::{Event, Events},
};

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

type Reply = oneshot::Sender<Result<u64>>;

/// First wait before reopening the database after a failed commit.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two reopen attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

enum Msg {
    /// An op, its reply, and whether to mirror a put into memory (false
    /// when the caller already put the same entry there).
    Write(Op, Reply, bool),
    /// Commit what is queued, then stop taking writes.
    Close,
}

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub queue: usize,
    pub max_batch: usize,
    pub max_delay: Duration,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

/// What the writer touches besides the disk.
pub struct Targets {
    pub disk: Arc<DiskTier>,
    pub memory: MemoryTier,
    pub fences: Arc<dyn CommitFence>,
    pub events: Events,
    /// Whether disk writes are accepted (see `Store::disk_healthy`).
    pub healthy: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    /// Start the writer task.
    pub fn spawn(targets: Targets, batching: Batching) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(batching.queue);
        let task = tokio::spawn(run(rx, Arc::new(targets), batching));
        (Writer { tx }, task)
    }

    /// Queue `op` and wait until it is committed (a put: logged, see the
    /// module docs; anything else: in redb too). Returns how many entries
    /// it wrote or removed.
    pub async fn write(&self, op: Op) -> Result<u64> {
        self.send(op, true)?.await
    }

    /// For a put whose entry the caller has already inserted into memory:
    /// the commit bumps the key's fence but does not insert it again. The
    /// op is queued before this returns (so a caller can order it under its
    /// own lock); the future answers once it is committed.
    pub fn persist(&self, op: Op) -> Result<impl Future<Output = Result<u64>>> {
        self.send(op, false)
    }

    fn send(&self, op: Op, mirror: bool) -> Result<impl Future<Output = Result<u64>>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Msg::Write(op, reply, mirror))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded("the disk write queue"),
                mpsc::error::TrySendError::Closed(_) => Error::ShuttingDown,
            })?;
        Ok(async move { answer.await.map_err(|_| Error::ShuttingDown)? })
    }

    /// Ask the writer to commit everything queued and stop. Writes queued
    /// after this are refused with `ShuttingDown`.
    pub async fn close(&self) {
        // A send error means the writer already stopped.
        let _ = self.tx.send(Msg::Close).await;
    }
}

/// When to try reopening a database whose commit failed.
#[derive(Default)]
struct Retry {
    /// Attempts made since the failure; `None` while the disk is healthy.
    failed: Option<(u32, Instant)>,
}

impl Retry {
    /// The next attempt's time, if one is due at all.
    fn due(&mut self, disk: &DiskTier) -> Option<Instant> {
        if disk.writable() {
            self.failed = None;
            return None;
        }
        let (_, at) = self
            .failed
            .get_or_insert_with(|| (0, Instant::now() + RETRY_FIRST));
        Some(*at)
    }

    /// One attempt failed: wait twice as long (at most [`RETRY_MAX`]).
    fn back_off(&mut self) {
        let attempts = self.failed.map_or(0, |(n, _)| n) + 1;
        let wait = RETRY_FIRST
            .saturating_mul(1 << attempts.min(16))
            .min(RETRY_MAX);
        self.failed = Some((attempts, Instant::now() + wait));
    }
}

/// A logged group going through redb on a blocking thread; it answers its
/// writers when done.
type Applying = tokio::task::JoinHandle<()>;

async fn run(mut rx: mpsc::Receiver<Msg>, targets: Arc<Targets>, batching: Batching) {
    let mut retry = Retry::default();
    // The last group's redb commit, running while the next one is logged.
    let mut applying: Option<Applying> = None;
    loop {
        let first = match retry.due(&targets.disk) {
            None => rx.recv().await,
            Some(at) => tokio::select! {
                msg = rx.recv() => msg,
                () = tokio::time::sleep_until(at) => {
                    settle(&mut applying).await;
                    if !recover(&targets).await {
                        retry.back_off();
                    }
                    continue;
                }
            },
        };
        let Some(first) = first else { break };
        let mut batch: Vec<(Op, Reply, bool)> = Vec::new();
        let mut closing = false;
        let mut take = |msg: Msg, batch: &mut Vec<_>| match msg {
            Msg::Write(op, reply, mirror) => batch.push((op, reply, mirror)),
            Msg::Close => closing = true,
        };
        take(first, &mut batch);
        // Whatever is already queued joins this commit without waiting.
        while batch.len() < batching.max_batch {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut batch),
                Err(_) => break,
            }
        }
        if !batching.max_delay.is_zero() {
            let deadline = tokio::time::sleep(batching.max_delay);
            tokio::pin!(deadline);
            while batch.len() < batching.max_batch {
                tokio::select! {
                    biased;
                    msg = rx.recv() => match msg {
                        Some(msg) => take(msg, &mut batch),
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        if closing {
            // Refuse new writes; the loop still drains what is queued.
            rx.close();
        }
        // Compaction and checkpoints need every logged group in redb.
        if targets.disk.over_capacity() || targets.disk.checkpoint_due() {
            settle(&mut applying).await;
            keep_in_shape(&targets).await;
        }
        if !batch.is_empty() {
            applying = commit(batch, &targets, applying.take()).await;
        }
    }
    settle(&mut applying).await;
    if targets.disk.writable() {
        // Checkpoint, then fit: a durable commit after the fit's last
        // eviction could double the file it just compacted.
        maintain(targets.clone(), "checkpointing the disk tier", |disk| {
            disk.checkpoint().map(|()| Applied::default())
        })
        .await;
        keep_in_shape(&targets).await;
    }
}

/// Log one group on a blocking thread (one append, one `fdatasync`) and
/// answer its puts ([`log`]), then hand it to redb once `before`, the
/// group logged before it, is through; returns that redb commit. Logging
/// this group overlaps with `before`'s commit, so the disk's sync and
/// redb's CPU work run side by side, and waiting for `before` bounds the
/// groups that are logged but not yet in redb to two.
async fn commit(
    batch: Vec<(Op, Reply, bool)>,
    targets: &Arc<Targets>,
    mut before: Option<Applying>,
) -> Option<Applying> {
    let shared = targets.clone();
    let (group, logged) = match tokio::task::spawn_blocking(move || log(batch, &shared)).await {
        Ok(Some(logged)) => logged,
        // Its writers are answered.
        Ok(None) => return before,
        Err(panic) => {
            // The batch is lost with the panicked thread; its writers see
            // their oneshots dropped and get ShuttingDown-style errors.
            tracing::error!(error = %panic, "disk commit panicked");
            return before;
        }
    };
    // redb takes the groups in log order.
    settle(&mut before).await;
    let shared = targets.clone();
    Some(tokio::task::spawn_blocking(move || {
        apply(group, logged, &shared)
    }))
}

/// A logged group on its way to redb: each op with the answer it is still
/// owed (a put is answered once logged).
type Group = Vec<(Op, Option<Reply>)>;

/// Log a group (a group of sweeps only is not logged: ARCHITECTURE.md §2),
/// then, now that it is durable, apply it to memory in order and answer
/// its puts. `None` if the log refused it (its writers are answered).
fn log(batch: Vec<(Op, Reply, bool)>, targets: &Targets) -> Option<(Group, Option<Logged>)> {
    let logged = if batch.iter().all(|(op, _, _)| matches!(op, Op::Sweep)) {
        None
    } else {
        let ops: Vec<&Op> = batch.iter().map(|(op, _, _)| op).collect();
        let result = targets.disk.log(&ops);
        targets.note_health();
        match result {
            Ok(logged) => Some(logged),
            Err(err) => {
                tracing::error!(error = %err, writes = batch.len(), "disk commit failed");
                for (_, reply, _) in batch {
                    let _ = reply.send(Err(err.clone()));
                }
                return None;
            }
        }
    };
    let group = batch
        .into_iter()
        .map(|(op, reply, mirror)| {
            mirror_in_memory(targets, &op, mirror);
            match op {
                Op::Put { .. } => {
                    let _ = reply.send(Ok(1));
                    (op, None)
                }
                _ => (op, Some(reply)),
            }
        })
        .collect();
    Some((group, logged))
}

/// Commit a logged group to redb and answer the writers that wait for
/// its counts (deletes, drops, sweeps).
fn apply(group: Group, logged: Option<Logged>, targets: &Targets) {
    let ops: Vec<&Op> = group.iter().map(|(op, _)| op).collect();
    let result = targets.disk.apply_logged(&ops, logged);
    targets.note_health();
    match result {
        Ok(applied) => {
            for ((op, _), count) in group.iter().zip(&applied.counts) {
                announce(&targets.events, op, *count);
            }
            announce_capacity(&targets.events, &applied);
            for ((_, reply), count) in group.into_iter().zip(applied.counts) {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(count));
                }
            }
        }
        Err(err) => {
            // The logged ops stay readable and come back with the replay
            // of the recovery.
            tracing::error!(error = %err, writes = group.len(), "disk commit failed");
            for reply in group.into_iter().filter_map(|(_, reply)| reply) {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// Wait for the group in redb (if any) to be through.
async fn settle(applying: &mut Option<Applying>) {
    if let Some(task) = applying.take() {
        if let Err(panic) = task.await {
            // Its writers see their oneshots dropped.
            tracing::error!(error = %panic, "disk commit panicked");
        }
    }
}

/// Compact if a commit left the file above the capacity (a compaction
/// checkpoints first), else checkpoint if the log is due one.
async fn keep_in_shape(targets: &Arc<Targets>) {
    if targets.disk.over_capacity() {
        maintain(targets.clone(), "compacting the disk tier", |disk| {
            disk.fit()
        })
        .await;
    } else if targets.disk.checkpoint_due() {
        maintain(targets.clone(), "checkpointing the disk tier", |disk| {
            disk.checkpoint().map(|()| Applied::default())
        })
        .await;
    }
}

/// One reopen attempt; true if writes are accepted again.
async fn recover(targets: &Arc<Targets>) -> bool {
    maintain(targets.clone(), "reopening the disk tier", |disk| {
        disk.recover().map(|()| Applied::default())
    })
    .await;
    let healthy = targets.disk.writable();
    if healthy {
        tracing::info!("the disk tier is writable again");
    }
    healthy
}

/// Run `work` on the disk tier on a blocking thread (no commit runs
/// meanwhile: only the writer calls this), announce what it evicted, log a
/// failure and update the health flag.
async fn maintain(
    targets: Arc<Targets>,
    what: &'static str,
    work: impl FnOnce(&DiskTier) -> Result<Applied> + Send + 'static,
) {
    let shared = targets.clone();
    let done = tokio::task::spawn_blocking(move || work(&shared.disk)).await;
    match done {
        Ok(Ok(applied)) => announce_capacity(&targets.events, &applied),
        Ok(Err(err)) => tracing::warn!(error = %err, "{what} failed"),
        Err(panic) => tracing::error!(error = %panic, "{what} panicked"),
    }
    targets.note_health();
}

impl Targets {
    /// Mirror the disk tier's state into the flag `/healthz` reads.
    fn note_health(&self) {
        self.healthy.store(self.disk.writable(), Ordering::SeqCst);
    }
}

fn announce(events: &Events, op: &Op, count: u64) {
    match op {
        Op::Put { key, entry } => events.emit(Event::Stored {
            namespace: key.namespace,
            bytes: entry.value.len() as u64,
        }),
        Op::Delete { key } if count > 0 => events.emit(Event::Invalidated {
            namespace: key.namespace,
            count,
        }),
        Op::DropNamespace(namespace) => events.emit(Event::Invalidated {
            namespace: *namespace,
            count,
        }),
        Op::Sweep if count > 0 => events.emit(Event::Expired {
            tier: "disk",
            count,
        }),
        Op::Delete { .. } | Op::Sweep => {}
    }
}

fn announce_capacity(events: &Events, applied: &Applied) {
    if applied.expired > 0 {
        events.emit(Event::Expired {
            tier: "disk",
            count: applied.expired,
        });
    }
    if applied.evicted > 0 {
        events.emit(Event::Evicted {
            tier: "disk",
            count: applied.evicted,
        });
    }
}

fn mirror_in_memory(targets: &Targets, op: &Op, mirror: bool) {
    match op {
        Op::Put { key, entry } => {
            targets.fences.bump(key);
            if mirror {
                targets.memory.insert(key.clone(), entry.clone());
            }
        }
        Op::Delete { key } => {
            targets.fences.bump(key);
            targets.memory.remove(key);
        }
        Op::DropNamespace(ns) => {
            targets.fences.bump_all();
            targets.memory.remove_namespace(*ns);
        }
        Op::Sweep => {}
    }
}
