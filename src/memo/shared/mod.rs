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
//! - **Computations** (`claim`): before computing, the leader of this
//!   server's flight takes the key's fleet-wide lease or waits for the
//!   server that holds it ([`lease`]).
//!
//! Values larger than `shared_max_value` stay local. The state the tier
//! and its tasks share, and every exchange with Redis, is [`inner`].

mod breaker;
mod conn;
mod inner;
mod lease;
mod listen;
mod metrics;
mod wire;

use std::{
    collections::HashMap,
    sync::{atomic::AtomicU64, Arc},
};

use futures::{future::BoxFuture, FutureExt};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};

use self::{breaker::Breaker, conn::Conn, inner::Core};
pub(crate) use self::{listen::Invalidation, metrics::SharedMetrics};
use super::tier::{Claim, Level, Pending, Tier};
use crate::{
    error::{Error, Result},
    store::{Clock, Entry, Key, SharedOptions, KV_NAMESPACE},
};

/// Computed results waiting to be written; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Invalidations heard and not yet applied; past it the listener waits
/// (Redis buffers what it has not read).
const HEARD: usize = 4096;
/// Removals Redis did not take that wait to be redone; past it a `DELETE`
/// Redis cannot take is refused (503) rather than remembered.
const UNREMOVED: usize = 65_536;

/// The shared tier. Its tasks (the writer, the listener) hold the core and
/// end when it is dropped.
pub(crate) struct Shared {
    core: Arc<Core>,
    /// Computed results, with the generation they were computed under.
    queue: mpsc::Sender<(Key, Entry, Option<u64>)>,
    /// Dropped with the tier: stops the listener.
    _stop: watch::Sender<()>,
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
        let nodes = options.url.urls().map(redis::Client::open);
        let nodes = nodes.collect::<redis::RedisResult<Vec<_>>>();
        let nodes = nodes.map_err(invalid)?;
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
            waiting: Mutex::default(),
            leased: Mutex::default(),
            tokens: AtomicU64::new(0),
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
            nodes,
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
async fn write_task(core: Arc<Core>, mut queued: mpsc::Receiver<(Key, Entry, Option<u64>)>) {
    while let Some((key, entry, generation)) = queued.recv().await {
        core.set(&key, &entry, generation).await;
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

    fn claim(&self, key: &Key) -> Option<BoxFuture<'static, Claim>> {
        Some(self.core.clone().claim(key.clone()).boxed())
    }

    fn promote(&self, _key: &Key, _entry: &Entry) {
        // The last tier: nothing behind it to promote from.
    }

    fn put<'a>(&'a self, key: &'a Key, entry: &'a Entry) -> BoxFuture<'a, Result<()>> {
        async move {
            self.core.set(key, entry, None).await;
            Ok(())
        }
        .boxed()
    }

    fn write_back(&self, key: &Key, entry: &Entry) -> Result<Option<Pending>> {
        // Already in Redis: a leased computation's result (its lease wrote
        // it before announcing it), or one another server's lease wrote.
        if self.core.leased.lock().remove(key) {
            return Ok(None);
        }
        // Its model's generation now: a drop between now and the write
        // makes it stale (the disk tier gets the same from its queue
        // order).
        let generation = self.core.generation(key.namespace);
        let queued = (key.clone(), entry.clone(), generation);
        if self.queue.try_send(queued).is_err() {
            self.core.metrics.op("set", "dropped");
        }
        Ok(None)
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        async move {
            let core = &self.core;
            let removed = core.call("del", core.delete(key)).await;
            if removed.is_none() {
                let mut unremoved = core.unremoved.lock();
                if unremoved.len() >= UNREMOVED && !unremoved.contains(key) {
                    return Err(Error::Unavailable(
                        "the shared tier is unreachable and too many removals wait for it; \
                         the local copies are gone, retry the DELETE"
                            .into(),
                    ));
                }
                unremoved.insert(key.clone());
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// With Redis unreachable, removals are remembered up to `UNREMOVED`
    /// keys; past it a new key's `DELETE` is refused, not remembered.
    #[tokio::test]
    async fn removals_waiting_for_redis_are_bounded() {
        let options = SharedOptions {
            // Nothing listens on port 1: connections are refused.
            url: String::from("redis://127.0.0.1:1").into(),
            cluster: false,
            timeout: Duration::from_millis(50),
            ttl: None,
            max_value: 1 << 20,
        };
        let (shared, _heard) = Shared::open(options, Clock::new()).unwrap();
        let key = |i: usize| Key::new(KV_NAMESPACE, i.to_be_bytes());
        for i in 0..UNREMOVED {
            assert!(!shared.remove(&key(i)).await.unwrap());
        }
        assert!(matches!(
            shared.remove(&key(UNREMOVED)).await,
            Err(Error::Unavailable(_))
        ));
        // A key already remembered costs nothing more.
        assert!(!shared.remove(&key(7)).await.unwrap());
        assert_eq!(shared.core.unremoved.lock().len(), UNREMOVED);
    }
}
