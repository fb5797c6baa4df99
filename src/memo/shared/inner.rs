//! The shared tier's state and its exchanges with Redis: every call under
//! the timeout and the breaker, reads, writes, removals and the
//! announcements (what this server tells the fleet and what it hears).

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{atomic::AtomicU64, Arc},
    time::Instant,
};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use redis::RedisResult;
use tokio::sync::Notify;

use super::{
    breaker::Breaker,
    conn::Conn,
    listen::Invalidation,
    metrics::SharedMetrics,
    wire::{self, Announcement},
};
use crate::store::{Clock, Entry, Key, SharedOptions};

/// What the tier and its tasks share.
pub(crate) struct Core {
    /// This server, in announcements (to skip its own).
    pub(crate) id: u64,
    pub(crate) conn: Conn,
    pub(crate) breaker: Breaker,
    pub(crate) options: SharedOptions,
    pub(crate) clock: Clock,
    /// The portable name of each namespace (the KV API's is `@kv`).
    pub(crate) names: RwLock<HashMap<u32, Arc<str>>>,
    /// Each model's fleet-wide generation, once read or bumped.
    pub(crate) generations: RwLock<HashMap<u32, u64>>,
    /// Removals Redis did not take (down, timed out): retried before the
    /// next use of the key or model, which until then Redis cannot answer,
    /// so a removal acknowledged here is never undone by a stale copy. At
    /// most 65,536 keys: past it a `DELETE` is refused (`Shared::remove`).
    pub(crate) unremoved: Mutex<HashSet<Key>>,
    pub(crate) undropped: Mutex<HashSet<u32>>,
    /// Keys whose lease another server holds, by `NAME:HEX`: woken when
    /// it announces the result. One per key at most (local coalescing).
    pub(crate) waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// Results already in Redis (a lease wrote them, or another server's
    /// lease did), which the write-back that follows skips.
    pub(crate) leased: Mutex<HashSet<Key>>,
    /// Numbers this server's lease tokens.
    pub(crate) tokens: AtomicU64,
    pub(crate) metrics: SharedMetrics,
}

impl Core {
    /// The namespace this server serves model `name` under.
    pub(crate) fn namespace_of(&self, name: &str) -> Option<u32> {
        let names = self.names.read();
        names.iter().find(|(_, n)| &***n == name).map(|(ns, _)| *ns)
    }

    /// Run one exchange with Redis under the timeout and the breaker;
    /// `None` if it failed, timed out or was not tried.
    pub(crate) async fn call<T>(
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
    pub(crate) async fn redis_key(&self, key: &Key) -> RedisResult<Option<String>> {
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

    pub(crate) async fn get(&self, key: &Key) -> Option<Entry> {
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
    /// The generation of `namespace` this server knows now, if any.
    pub(crate) fn generation(&self, namespace: u32) -> Option<u64> {
        self.generations.read().get(&namespace).copied()
    }

    /// Store `entry`, computed under generation `computed` of its model
    /// when known: if the model was dropped since, the result is stale and
    /// is not written (as the chain refuses to land it locally).
    pub(crate) async fn set(&self, key: &Key, entry: &Entry, computed: Option<u64>) {
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
                if computed.is_some_and(|g| self.generation(key.namespace) != Some(g)) {
                    return Ok(false);
                }
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
    pub(crate) async fn delete(&self, key: &Key) -> RedisResult<u64> {
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
    pub(crate) async fn bump(&self, namespace: u32, name: &str) -> RedisResult<()> {
        let key = wire::generation_key(name);
        let generation = self.conn.query(redis::cmd("INCR").arg(key)).await?;
        self.generations.write().insert(namespace, generation);
        let name = name.to_string();
        self.announce(&Announcement::Dropped { name, generation })
            .await
    }
}

/// Announcements: what this server tells the fleet, and what it hears.
impl Core {
    /// The local invalidation an announcement asks for; `None` for our
    /// own, a malformed one, or a model this server does not serve.
    pub(crate) fn heard(&self, message: &[u8]) -> Option<Invalidation> {
        let (sender, what) = wire::heard(message)?;
        if sender == self.id {
            return None;
        }
        let name = match &what {
            Announcement::Deleted { name, .. }
            | Announcement::Dropped { name, .. }
            | Announcement::Computed { name, .. } => name,
        };
        let namespace = self.namespace_of(name)?;
        Some(match what {
            Announcement::Deleted { id, .. } => Invalidation::Key(Key::new(namespace, id)),
            Announcement::Dropped { generation, .. } => {
                self.generations.write().insert(namespace, generation);
                Invalidation::Namespace(namespace)
            }
            Announcement::Computed { name, id } => {
                let waiter = self.waiting.lock().get(&waiter_name(&name, &id)).cloned();
                if let Some(waiter) = waiter {
                    waiter.notify_waiters();
                }
                return None;
            }
        })
    }

    /// Announce `what` to the fleet.
    pub(crate) async fn announce(&self, what: &Announcement) -> redis::RedisResult<()> {
        let message = wire::announce(self.id, what);
        let cmd = redis::cmd("PUBLISH")
            .arg(wire::CHANNEL)
            .arg(message)
            .clone();
        self.conn.query::<u64>(&cmd).await.map(drop)
    }
}

/// The `waiting` name of key `id` of model `name`.
pub(crate) fn waiter_name(name: &str, id: &[u8]) -> String {
    format!("{name}:{}", wire::hex(id))
}
