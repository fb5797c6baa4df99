//! The shared tier: Redis or Valkey behind disk, so a fleet of servers
//! shares what any of them computed or was given (README: Running a fleet).
//!
//! It is a [`Level`] like disk, with one rule of its own: **Redis is never
//! worth an error.** Every call is bounded by `shared_timeout`; an error, a
//! timeout, a refused call (the [`breaker`] is open) or a value that does
//! not decode ([`wire`]) is a miss for reads and a counted, logged failure
//! for writes, never an error for the client. Start-up never waits for
//! Redis ([`conn`] connects on first use).
//!
//! - **Reads** (`get`): one `GET` (plus, once per model, reading its
//!   generation).
//! - **KV writes** (`put`): awaited, so with a healthy Redis a `PUT` on one
//!   server is readable on every other at once.
//! - **Computed results** (`write_back`): through a bounded queue, one
//!   task writing them; a full queue drops the write and counts it.
//! - **Promotions** never reach it: it is the last tier.
//! - **Removals**: `DEL`; a model's cache drop `INCR`s the model's
//!   generation, part of every key, so older entries are unreachable. Both
//!   are announced on a pub/sub channel ([`listen`]), and every other
//!   server drops its local copies.
//!
//! Values larger than `shared_max_value` stay local.

mod breaker;
mod conn;
mod listen;
mod metrics;
mod wire;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use futures::{future::BoxFuture, FutureExt};
use parking_lot::{Mutex, RwLock};
use redis::RedisResult;
use tokio::sync::{mpsc, watch};

use self::{breaker::Breaker, conn::Conn, wire::Announcement};
pub(crate) use self::{listen::Invalidation, metrics::SharedMetrics};
use super::tier::{Level, Pending, Tier};
use crate::{
    error::{Error, Result},
    store::{Clock, Entry, Key, SharedOptions, KV_NAMESPACE},
};

/// Computed results waiting to be written; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Invalidations heard and not yet applied; more are dropped (and logged).
const HEARD: usize = 4096;

/// The shared tier. Its tasks (the writer, the listener) hold the core and
/// end when it is dropped.
pub(crate) struct Shared {
    core: Arc<Core>,
    queue: mpsc::Sender<(Key, Entry)>,
    /// Dropped with the tier: stops the listener.
    _stop: watch::Sender<()>,
}

struct Core {
    /// This server, in announcements (to skip its own).
    id: u64,
    conn: Conn,
    breaker: Breaker,
    options: SharedOptions,
    clock: Clock,
    /// The portable name of each namespace (the KV API's is `@kv`).
    names: RwLock<HashMap<u32, Arc<str>>>,
    /// Each model's fleet-wide generation, once read or bumped.
    generations: RwLock<HashMap<u32, u64>>,
    /// Removals Redis did not take (down, timed out): retried before the
    /// next use of the key or model, which until then Redis cannot answer,
    /// so a removal acknowledged here is never undone by a stale copy.
    unremoved: Mutex<HashSet<Key>>,
    undropped: Mutex<HashSet<u32>>,
    metrics: SharedMetrics,
}

impl Shared {
    /// Set up the tier, its writer and its listener; connects on first
    /// use. The receiver yields what other servers asked this one to drop
    /// from its local tiers. Must be called inside a tokio runtime.
    pub(crate) fn open(
        options: SharedOptions,
        clock: Clock,
    ) -> Result<(Shared, mpsc::Receiver<Invalidation>)> {
        let invalid = |e: redis::RedisError| {
            Error::Storage(format!("shared_url: {}", e.to_string().replace('\n', " ")))
        };
        let conn = Conn::open(&options).map_err(invalid)?;
        let first = options.url.urls().next().unwrap_or_default();
        let listener = redis::Client::open(first).map_err(invalid)?;
        let names = HashMap::from([(KV_NAMESPACE, Arc::from("@kv"))]);
        let core = Arc::new(Core {
            id: instance_id(),
            conn,
            breaker: Breaker::new(),
            options,
            clock,
            names: RwLock::new(names),
            generations: RwLock::new(HashMap::from([(KV_NAMESPACE, 0)])),
            unremoved: Mutex::default(),
            undropped: Mutex::default(),
            metrics: SharedMetrics::default(),
        });
        let (queue, queued) = mpsc::channel(QUEUE);
        tokio::spawn(write_task(core.clone(), queued));
        let (heard, invalidations) = mpsc::channel(HEARD);
        let (stop, stopped) = watch::channel(());
        let (hearing, resubscribed) = (core.clone(), core.clone());
        tokio::spawn(listen::listen(
            move |message| hearing.heard(message),
            // An announcement may have been missed: read generations
            // again. And Redis answers: say so before the first request.
            move || {
                let core = &resubscribed;
                core.generations.write().retain(|ns, _| *ns == KV_NAMESPACE);
                if core.breaker.is_closed() {
                    core.metrics.up.set(1);
                }
            },
            listener,
            heard,
            stopped,
        ));
        let shared = Shared {
            core,
            queue,
            _stop: stop,
        };
        Ok((shared, invalidations))
    }

    pub(crate) fn metrics(&self) -> &SharedMetrics {
        &self.core.metrics
    }
}

/// A number that tells this server's announcements from the others'.
fn instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Write queued results one after another; ends with the tier.
async fn write_task(core: Arc<Core>, mut queued: mpsc::Receiver<(Key, Entry)>) {
    while let Some((key, entry)) = queued.recv().await {
        core.set(&key, &entry).await;
    }
}

impl Core {
    /// The namespace this server serves model `name` under.
    fn namespace_of(&self, name: &str) -> Option<u32> {
        let names = self.names.read();
        names.iter().find(|(_, n)| &***n == name).map(|(ns, _)| *ns)
    }

    /// Run one exchange with Redis under the timeout and the breaker;
    /// `None` if it failed, timed out or was not tried.
    async fn call<T>(
        &self,
        op: &'static str,
        exchange: impl Future<Output = RedisResult<T>>,
    ) -> Option<T> {
        if !self.breaker.allow() {
            self.metrics.op(op, "skipped");
            return None;
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.options.timeout, exchange).await;
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        let failed = match outcome {
            Ok(Ok(value)) => {
                self.breaker.success();
                if self.metrics.up.set(1) == 0 {
                    tracing::info!("shared tier: Redis answers; sharing resumes");
                }
                return Some(value);
            }
            Ok(Err(e)) => {
                self.metrics.op(op, "error");
                e.to_string()
            }
            Err(_) => {
                self.metrics.op(op, "timeout");
                format!("no answer within {:?}", self.options.timeout)
            }
        };
        self.breaker.failure();
        if !self.breaker.is_closed() && self.metrics.up.set(0) == 1 {
            tracing::warn!(op, error = %failed, "shared tier: Redis unreachable; serving from the local tiers");
        } else {
            tracing::debug!(op, error = %failed, "shared tier: call failed");
        }
        None
    }

    /// The Redis key of `key`: its model's name and current generation
    /// (read from Redis the first time). `None` for a namespace this
    /// server never named.
    async fn redis_key(&self, key: &Key) -> RedisResult<Option<String>> {
        let Some(name) = self.names.read().get(&key.namespace).cloned() else {
            return Ok(None);
        };
        if self.undropped.lock().contains(&key.namespace) {
            self.bump(key.namespace, &name).await?;
            self.undropped.lock().remove(&key.namespace);
        }
        let known = self.generations.read().get(&key.namespace).copied();
        let generation = match known {
            Some(generation) => generation,
            None => {
                let read: Option<u64> = self
                    .conn
                    .query(redis::cmd("GET").arg(wire::generation_key(&name)))
                    .await?;
                let generation = read.unwrap_or(0);
                self.generations.write().insert(key.namespace, generation);
                generation
            }
        };
        Ok(Some(wire::key_name(&name, &key.id, generation)))
    }

    async fn get(&self, key: &Key) -> Option<Entry> {
        let raw = self
            .call("get", async {
                if self.unremoved.lock().contains(key) {
                    self.delete(key).await?;
                    self.unremoved.lock().remove(key);
                    return Ok(None);
                }
                let Some(name) = self.redis_key(key).await? else {
                    return Ok(None);
                };
                let raw: Option<Vec<u8>> = self.conn.query(redis::cmd("GET").arg(&name)).await?;
                Ok(raw.map(|raw| (name, raw)))
            })
            .await?;
        let entry = raw.and_then(|(name, raw)| wire::decode(&name, Bytes::from(raw)));
        let live = entry.filter(|e| e.expires_at.is_none_or(|at| at > self.clock.now_ms()));
        self.metrics
            .op("get", if live.is_some() { "hit" } else { "miss" });
        live
    }

    /// Store `entry` unless it is too large or already expired; a failure
    /// is counted and logged (by `call`), never returned.
    async fn set(&self, key: &Key, entry: &Entry) {
        if entry.value.len() as u64 > self.options.max_value {
            self.metrics.op("set", "too_large");
            return;
        }
        let now = self.clock.now_ms();
        let left = entry.expires_at.map(|at| at.saturating_sub(now));
        let ttl = self.options.ttl.map(|t| t.as_millis() as u64);
        let px = match (left, ttl) {
            (Some(0), _) => return,
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let stored = self
            .call("set", async {
                let Some(name) = self.redis_key(key).await? else {
                    return Ok(false);
                };
                let mut cmd = redis::cmd("SET");
                cmd.arg(&name).arg(wire::encode(&name, entry).as_ref());
                if let Some(px) = px {
                    cmd.arg("PX").arg(px.max(1));
                }
                self.conn.query::<()>(&cmd).await.map(|()| true)
            })
            .await;
        if stored == Some(true) {
            // Overwritten: nothing stale left to remove.
            self.unremoved.lock().remove(key);
            self.metrics.op("set", "ok");
        }
    }

    /// `DEL` `key` and announce it; how many keys Redis removed.
    async fn delete(&self, key: &Key) -> RedisResult<u64> {
        let Some(redis_key) = self.redis_key(key).await? else {
            return Ok(0);
        };
        let removed = self.conn.query(redis::cmd("DEL").arg(redis_key)).await?;
        let name = self.names.read().get(&key.namespace).cloned();
        if let Some(name) = name {
            let (name, id) = (name.to_string(), key.id.to_vec());
            self.announce(&Announcement::Deleted { name, id }).await?;
        }
        Ok(removed)
    }

    /// Bump model `name`'s generation and announce it.
    async fn bump(&self, namespace: u32, name: &str) -> RedisResult<()> {
        let key = wire::generation_key(name);
        let generation = self.conn.query(redis::cmd("INCR").arg(key)).await?;
        self.generations.write().insert(namespace, generation);
        let name = name.to_string();
        self.announce(&Announcement::Dropped { name, generation })
            .await
    }
}

impl Level for Shared {
    fn tier(&self) -> Tier {
        Tier::Shared
    }

    fn name_namespace(&self, namespace: u32, name: &str) {
        self.core.names.write().insert(namespace, Arc::from(name));
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Entry>>> {
        async move { Ok(self.core.get(key).await) }.boxed()
    }

    fn promote(&self, _key: &Key, _entry: &Entry) {
        // The last tier: nothing behind it to promote from.
    }

    fn put<'a>(&'a self, key: &'a Key, entry: &'a Entry) -> BoxFuture<'a, Result<()>> {
        async move {
            self.core.set(key, entry).await;
            Ok(())
        }
        .boxed()
    }

    fn write_back(&self, key: &Key, entry: &Entry) -> Result<Option<Pending>> {
        if self.queue.try_send((key.clone(), entry.clone())).is_err() {
            self.core.metrics.op("set", "dropped");
        }
        Ok(None)
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        async move {
            let core = &self.core;
            let removed = core.call("del", core.delete(key)).await;
            if removed.is_none() {
                core.unremoved.lock().insert(key.clone());
            }
            Ok(removed.unwrap_or(0) > 0)
        }
        .boxed()
    }

    fn drop_namespace(&self, namespace: u32) -> BoxFuture<'_, Result<u64>> {
        async move {
            let core = &self.core;
            let Some(name) = core.names.read().get(&namespace).cloned() else {
                return Ok(0);
            };
            if core
                .call("incr", core.bump(namespace, &name))
                .await
                .is_none()
            {
                core.generations.write().remove(&namespace);
                core.undropped.lock().insert(namespace);
            }
            // Redis cannot count a generation's keys without a scan.
            Ok(0)
        }
        .boxed()
    }
}

/// Announcements: what this server tells the fleet, and what it hears.
impl Core {
    /// The local invalidation an announcement asks for; `None` for our
    /// own, a malformed one, or a model this server does not serve.
    fn heard(&self, message: &[u8]) -> Option<Invalidation> {
        let (sender, what) = wire::heard(message)?;
        if sender == self.id {
            return None;
        }
        let name = match &what {
            Announcement::Deleted { name, .. } | Announcement::Dropped { name, .. } => name,
        };
        let namespace = self.namespace_of(name)?;
        Some(match what {
            Announcement::Deleted { id, .. } => Invalidation::Key(Key::new(namespace, id)),
            Announcement::Dropped { generation, .. } => {
                self.generations.write().insert(namespace, generation);
                Invalidation::Namespace(namespace)
            }
        })
    }

    /// Announce `what` to the fleet.
    async fn announce(&self, what: &Announcement) -> redis::RedisResult<()> {
        let message = wire::announce(self.id, what);
        let cmd = redis::cmd("PUBLISH")
            .arg(wire::CHANNEL)
            .arg(message)
            .clone();
        self.conn.query::<u64>(&cmd).await.map(drop)
    }
}
