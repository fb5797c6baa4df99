//! The in-flight map: one computation per key, its result fanned out to
//! every waiter over oneshot channels.
//!
//! A flight moves through two states in a dashmap slot:
//! - `Running`: the computation is a spawned task (it outlives the caller
//!   that started it); callers register a oneshot sender and wait. When the
//!   last waiter leaves (cancelled or timed out), the task is aborted and the
//!   slot cleared.
//! - `Landed`: the result is known and written back (in memory, its durable
//!   write under way). Late callers take the result from the slot. The slot
//!   is cleared once the write has committed, so a caller that finds it
//!   empty will find the result in the tiers (the chain's fence tells it to
//!   look again).
//!
//! This map knows nothing of tiers: the caller hands [`Inflight::join`] the
//! computation and the write-back (`land`), and a stamp (its model's
//! generation, see [`crate::memo::fence`]). A landed result is handed out
//! only to callers with the same stamp, so a result computed across a
//! model's cache drop still reaches its waiters but nobody after.
//!
//! Invariants, each enforced under the slot's lock: exactly one of the task
//! (landing), the last leaving waiter, or the task's drop guard (panic,
//! abort) removes a `Running` slot; errors are fanned out and never stored;
//! a panic becomes an error for the waiters; nobody waits forever.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use dashmap::{mapref::entry::Entry as Slot, DashMap};
use futures::FutureExt;
use parking_lot::Mutex;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::{sync::oneshot, task::AbortHandle};

use crate::{
    error::{Error, Result},
    store::{Entry, Key},
};

/// Whether a computation reads and writes the cache. Flights of different
/// policies never share: a `no-cache` caller wants a fresh computation, and
/// a `no-store` leader must not decide for callers that want storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Look in the tiers first (false: `Cache-Control: no-cache`).
    pub read: bool,
    /// Store the result (false: `Cache-Control: no-store`).
    pub write: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            read: true,
            write: true,
        }
    }
}

/// Where a flight's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// This flight computed it.
    Computed,
    /// Another server computed it; this flight waited on its fleet-wide
    /// lease (ARCHITECTURE.md §5).
    Fleet,
}

type Outcome = Result<(Entry, Origin)>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    key: Key,
    policy: Policy,
}

enum Flight {
    Running {
        id: u64,
        waiters: Vec<oneshot::Sender<Outcome>>,
        /// Waiters that have not left; the task is aborted at zero.
        live: usize,
        abort: AbortHandle,
    },
    Landed {
        id: u64,
        entry: Entry,
        /// The stamp it was computed under; callers with another stamp
        /// treat the slot as empty.
        stamp: u64,
    },
}

/// What a flight's task needs to know about itself.
struct Takeoff {
    fk: FlightKey,
    id: u64,
    /// The caller's stamp when the flight started.
    stamp: u64,
}

/// What a caller got from [`Inflight::join`].
pub(crate) enum Join<'a> {
    /// This caller started the computation.
    Led(Waiter<'a>),
    /// This caller waits on another's computation.
    Followed(Waiter<'a>),
    /// A computation just finished; here is its result.
    Landed(Entry),
    /// The slot was empty but a result was stored since the caller looked
    /// in the tiers: look again.
    LookAgain,
}

/// The in-flight map.
pub(crate) struct Inflight {
    map: DashMap<FlightKey, Flight>,
    next_id: AtomicU64,
    running: Gauge,
    /// Results that never reached disk, and when that was last logged.
    dropped: Counter,
    warned: Mutex<Option<Instant>>,
    /// Holds a landed flight before it waits for its durable write.
    #[cfg(test)]
    pub(crate) landed: super::fence::Gate,
}

impl Inflight {
    pub(crate) fn new(running: Gauge, dropped: Counter) -> Arc<Inflight> {
        Arc::new(Inflight {
            map: DashMap::new(),
            next_id: AtomicU64::new(0),
            running,
            dropped,
            warned: Mutex::new(None),
            #[cfg(test)]
            landed: Default::default(),
        })
    }

    /// Number of slots (running or landed); zero at quiescence.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Join the computation of `key`, or start `compute` when none runs.
    /// `stored_since_look` is asked, with the slot locked, when the slot is
    /// empty: if a result was stored since the caller looked, it must look
    /// again instead of computing twice. `land` writes a successful result
    /// back (only if `policy.write`), in the flight's task, before the
    /// waiters hear of it; the slot keeps the result until the future it
    /// returns has answered.
    pub(crate) fn join<'a, Fut, Land, Durable>(
        self: &'a Arc<Self>,
        key: &Key,
        policy: Policy,
        stamp: u64,
        stored_since_look: impl FnOnce() -> bool,
        compute: impl FnOnce() -> Fut,
        land: Land,
    ) -> Join<'a>
    where
        Fut: Future<Output = Outcome> + Send + 'static,
        Land: FnOnce(&Entry) -> Option<Durable> + Send + 'static,
        Durable: Future<Output = Result<()>> + Send + 'static,
    {
        let mut slot = self.map.entry(FlightKey {
            key: key.clone(),
            policy,
        });
        if let Slot::Occupied(occupied) = &mut slot {
            // The flight's own key, so that the caller may drop its copy
            // now, not on the fan-out's clock.
            let fk = occupied.key().clone();
            match occupied.get_mut() {
                Flight::Running {
                    id, waiters, live, ..
                } => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    *live += 1;
                    return Join::Followed(self.waiter(fk, *id, rx));
                }
                Flight::Landed {
                    entry,
                    stamp: landed,
                    ..
                } if *landed == stamp => return Join::Landed(entry.clone()),
                // Landed before its model's cache was dropped: as if empty.
                Flight::Landed { .. } => {}
            }
        }
        if stored_since_look() {
            return Join::LookAgain;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let fk = slot.key().clone();
        let flight = Takeoff {
            fk: fk.clone(),
            id,
            stamp,
        };
        let task = tokio::spawn(self.clone().fly(flight, compute(), land));
        slot.insert(Flight::Running {
            id,
            waiters: vec![tx],
            live: 1,
            abort: task.abort_handle(),
        });
        self.running.inc();
        Join::Led(self.waiter(fk, id, rx))
    }

    fn waiter(&self, fk: FlightKey, id: u64, rx: oneshot::Receiver<Outcome>) -> Waiter<'_> {
        Waiter {
            rx,
            ticket: Ticket {
                inflight: self,
                fk,
                id,
                armed: true,
            },
        }
    }

    /// The spawned computation: run, land, fan out, wait for the write,
    /// clear.
    async fn fly<Durable: Future<Output = Result<()>> + Send>(
        self: Arc<Self>,
        flight: Takeoff,
        work: impl Future<Output = Outcome> + Send + 'static,
        land: impl FnOnce(&Entry) -> Option<Durable>,
    ) {
        let Takeoff { fk, id, stamp } = flight;
        let _guard = CrashGuard {
            inflight: &self,
            fk: &fk,
            id,
        };
        let outcome = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(Error::Compute(format!(
                "the computation panicked: {}",
                panic_message(&panic)
            ))),
        };
        // `land` may refuse (e.g. the model's cache was dropped meanwhile);
        // the waiters get the result either way.
        let stored = match &outcome {
            Ok((entry, _)) if fk.policy.write => {
                land(entry).map(|durable| (entry.clone(), durable))
            }
            _ => None,
        };
        let (keep, durable) = stored.unzip();
        let waiters = self.land(&fk, id, keep.map(|entry| (entry, stamp)));
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
        if let Some(durable) = durable {
            #[cfg(test)]
            self.landed.pass().await;
            if let Err(e) = durable.await {
                self.write_dropped(&e);
            }
            self.map.remove_if(
                &fk,
                |_, f| matches!(f, Flight::Landed { id: l, .. } if *l == id),
            );
        }
    }

    /// Count a result that never reached disk; warn at most once a second.
    fn write_dropped(&self, error: &Error) {
        self.dropped.inc();
        let mut warned = self.warned.lock();
        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *warned = Some(Instant::now());
            let dropped = self.dropped.get();
            tracing::warn!(%error, dropped, "a computed result was not written to disk (infercache_writes_dropped_total)");
        }
    }

    /// Running -> Landed (with `keep` and its stamp) or removed; returns
    /// the waiters.
    fn land(
        &self,
        fk: &FlightKey,
        id: u64,
        keep: Option<(Entry, u64)>,
    ) -> Vec<oneshot::Sender<Outcome>> {
        let Slot::Occupied(mut slot) = self.map.entry(fk.clone()) else {
            return Vec::new();
        };
        if !matches!(slot.get(), Flight::Running { id: r, .. } if *r == id) {
            return Vec::new();
        }
        self.running.dec();
        let old = match keep {
            Some((entry, stamp)) => {
                std::mem::replace(slot.get_mut(), Flight::Landed { id, entry, stamp })
            }
            None => slot.remove(),
        };
        match old {
            Flight::Running { waiters, .. } => waiters,
            Flight::Landed { .. } => Vec::new(),
        }
    }

    /// A waiter left before its result: abort the flight if it was the last.
    fn leave(&self, fk: &FlightKey, id: u64) {
        let Slot::Occupied(mut slot) = self.map.entry(fk.clone()) else {
            return;
        };
        let Flight::Running {
            id: running,
            live,
            abort,
            ..
        } = slot.get_mut()
        else {
            return;
        };
        if *running != id {
            return;
        }
        *live -= 1;
        if *live == 0 {
            abort.abort();
            slot.remove();
            self.running.dec();
        }
    }
}

/// Removes the task's `Running` slot if the task dies without landing
/// (panic outside the computation, runtime shutdown); waiters then see
/// their senders dropped and get an error.
struct CrashGuard<'a> {
    inflight: &'a Inflight,
    fk: &'a FlightKey,
    id: u64,
}

impl Drop for CrashGuard<'_> {
    fn drop(&mut self) {
        let removed = self.inflight.map.remove_if(
            self.fk,
            |_, f| matches!(f, Flight::Running { id, .. } if *id == self.id),
        );
        if removed.is_some() {
            self.inflight.running.dec();
        }
    }
}

/// One caller's claim on a flight. It borrows the map and holds the
/// flight's key (a reference count, no allocation of its own), so that a
/// waiter woken by the fan-out has little to release.
pub(crate) struct Waiter<'a> {
    rx: oneshot::Receiver<Outcome>,
    /// Dropping an armed ticket leaves the flight.
    ticket: Ticket<'a>,
}

struct Ticket<'a> {
    inflight: &'a Inflight,
    fk: FlightKey,
    id: u64,
    /// False once the result arrived: the flight is over.
    armed: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inflight.leave(&self.fk, self.id);
        }
    }
}

impl Waiter<'_> {
    /// Wait for the result, at most `timeout`. Dropping the future (or
    /// timing out) leaves the flight; the last to leave cancels it.
    pub(crate) async fn wait(mut self, timeout: Option<Duration>) -> Outcome {
        let received = match timeout {
            Some(limit) => tokio::time::timeout(limit, &mut self.rx)
                .await
                .map_err(|_| Error::Timeout(limit))?,
            None => (&mut self.rx).await,
        };
        match received {
            Ok(outcome) => {
                // The flight is over: leaving would only cost a lock.
                self.ticket.armed = false;
                outcome
            }
            Err(_) => Err(Error::Compute(
                "the computation ended without a result".into(),
            )),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
