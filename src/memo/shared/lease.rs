//! Fleet-wide coalescing: one lease per key (`SET lease token NX PX`),
//! renewed while its holder computes and released only by it; the others
//! wait for its announcement (registered before they read again, so none
//! is missed), or take over once the lease expires (its holder died).
//! The lease saves work, it does not guard correctness: results are
//! deterministic, so a rare second computation is harmless.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use futures::{future::BoxFuture, FutureExt};
use tokio::sync::Notify;

use super::{
    inner::{waiter_name, Core},
    wire::{self, Announcement},
};
use crate::{
    memo::tier::{Claim, Lease},
    store::{Entry, Key},
};

/// A lease's lifetime: its holder renews it every third of it; a holder
/// that died frees the key this long after its last renewal.
const LEASE: Duration = Duration::from_secs(5);
/// How often a server waiting on another's lease looks again (besides
/// being woken by the announcement).
const RECHECK: Duration = Duration::from_millis(500);
/// The longest a server waits on another's lease before computing.
const MOST_WAIT: Duration = Duration::from_secs(60);
/// Delete or extend a lease only if this server still holds it.
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

impl Core {
    pub(crate) async fn claim(self: Arc<Self>, key: Key) -> Claim {
        let Some(name) = self.names.read().get(&key.namespace).cloned() else {
            return Claim::Alone;
        };
        let waiter = waiter_name(&name, &key.id);
        let notify = Arc::new(Notify::new());
        self.waiting.lock().insert(waiter.clone(), notify.clone());
        let claim = self.clone().contend(&key, &notify).await;
        self.waiting.lock().remove(&waiter);
        claim
    }

    async fn contend(self: Arc<Self>, key: &Key, notify: &Notify) -> Claim {
        let token = format!(
            "{:x}.{}",
            self.id,
            self.tokens.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = Instant::now() + MOST_WAIT;
        loop {
            let announced = notify.notified();
            tokio::pin!(announced);
            announced.as_mut().enable();
            if let Some(entry) = self.get(key).await {
                self.in_redis(key);
                return Claim::Found(entry);
            }
            let took = self
                .call("lease", async {
                    let Some(name) = self.redis_key(key).await? else {
                        return Ok(None);
                    };
                    let lease = wire::lease_key(&name);
                    let mut set = redis::cmd("SET");
                    set.arg(&lease).arg(&token).arg("NX").arg("PX");
                    let taken: Option<String> =
                        self.conn.query(set.arg(LEASE.as_millis() as u64)).await?;
                    Ok(Some((lease, taken.is_some())))
                })
                .await;
            match took {
                None | Some(None) => return Claim::Alone,
                Some(Some((lease, true))) => {
                    self.metrics.op("lease", "taken");
                    let held = Held::new(self.clone(), key.clone(), lease, token);
                    return Claim::Lead(Box::new(held));
                }
                Some(Some((_, false))) => self.metrics.op("lease", "waited"),
            }
            if Instant::now() >= deadline {
                return Claim::Alone;
            }
            tokio::select! {
                () = &mut announced => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// `key`'s result is in Redis already: the write-back that follows
    /// its landing skips the shared tier.
    fn in_redis(&self, key: &Key) {
        let mut leased = self.leased.lock();
        // Left behind when a landing published nothing (its model was
        // dropped meanwhile, or the caller asked not to store): forgetting
        // them costs a write.
        if leased.len() >= 4096 {
            leased.clear();
        }
        leased.insert(key.clone());
    }

    /// Run `script` on `lease` if this server holds it (`token`).
    async fn if_held(&self, script: &str, lease: &str, token: &str, op: &'static str) -> bool {
        let mut eval = redis::cmd("EVAL");
        eval.arg(script)
            .arg(1)
            .arg(lease)
            .arg(token)
            .arg(LEASE.as_millis() as u64);
        let done = self.call(op, self.conn.query::<u64>(&eval)).await;
        done.unwrap_or(0) > 0
    }
}

/// A lease this server holds: renewed until dropped, then released if
/// still held.
struct Held {
    core: Arc<Core>,
    key: Key,
    lease: Arc<str>,
    token: Arc<str>,
    /// The model's generation when the lease was taken (in its name).
    generation: Option<u64>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Held {
    fn new(core: Arc<Core>, key: Key, lease: String, token: String) -> Held {
        let (lease, token): (Arc<str>, Arc<str>) = (lease.into(), token.into());
        let generation = core.generation(key.namespace);
        let renewal = tokio::spawn({
            let (core, lease, token) = (core.clone(), lease.clone(), token.clone());
            async move {
                loop {
                    tokio::time::sleep(LEASE / 3).await;
                    if !core.if_held(RENEW, &lease, &token, "renew").await {
                        return;
                    }
                }
            }
        });
        Held {
            core,
            key,
            lease,
            token,
            generation,
            renewal,
        }
    }
}

impl Lease for Held {
    fn complete(self: Box<Self>, entry: &Entry) -> BoxFuture<'static, ()> {
        let entry = entry.clone();
        async move {
            let core = &self.core;
            core.set(&self.key, &entry, self.generation).await;
            core.in_redis(&self.key);
            let name = core.names.read().get(&self.key.namespace).cloned();
            if let Some(name) = name {
                let (name, id) = (name.to_string(), self.key.id.to_vec());
                let computed = Announcement::Computed { name, id };
                core.call("announce", core.announce(&computed)).await;
            }
        }
        .boxed()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
        let (core, lease, token) = (self.core.clone(), self.lease.clone(), self.token.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { core.if_held(RELEASE, &lease, &token, "release").await });
        }
    }
}
