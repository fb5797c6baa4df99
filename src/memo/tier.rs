//! The tiers of the read path, and what a tier behind memory must do to
//! take part in the chain ([`crate::memo::chain`]).
//!
//! Memory is the front of every chain and is not a [`Level`]: its hit is the
//! hot path (one moka lookup, no dispatch, no allocation). Every tier behind
//! it is a `Level`: looked up in order, filled with what a tier further
//! back found (a promotion), written back to, and cleared. A `Level` only
//! stores; the chain decides the order, holds the fences that let removals
//! win races, and counts hits.
//!
//! Adding a tier (the shared tier of ARCHITECTURE.md §5) is a file that
//! implements `Level`, its name in [`Tier`], and its line in the chain.

use futures::future::BoxFuture;

use crate::{
    error::Result,
    store::{Entry, Key},
};

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Disk,
    /// Redis or Valkey, shared by a fleet (`memo/shared/`).
    Shared,
}

impl Tier {
    /// The `X-Cache-Tier` header value and the `tier` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
            Tier::Shared => "shared",
        }
    }
}

/// The future of a queued write: answers once the write holds (is durable,
/// for disk).
pub(crate) type Pending = BoxFuture<'static, Result<()>>;

/// What a fleet-wide lease on a key says to do ([`Level::claim`]).
pub(crate) enum Claim {
    /// Compute it here, then hand the result to the lease.
    Lead(Box<dyn Lease>),
    /// Another server computed it meanwhile.
    Found(Entry),
    /// Nobody to agree with (e.g. Redis unreachable): compute here.
    Alone,
}

/// A held fleet-wide lease on one key; released when dropped.
pub(crate) trait Lease: Send {
    /// Store `entry` where the fleet reads it, announce it, release.
    fn complete(self: Box<Self>, entry: &Entry) -> BoxFuture<'static, ()>;
}

/// A tier behind memory.
///
/// Methods that run under a fence or generation lock (`promote`,
/// `write_back`) must not wait: they insert or queue, and hand back a
/// future for anything slow.
pub(crate) trait Level: Send + Sync + 'static {
    /// Which tier this is.
    fn tier(&self) -> Tier;

    /// Learn the portable name of `namespace` (a model's name), for a
    /// tier that several servers share: the number is this server's own.
    fn name_namespace(&self, _namespace: u32, _name: &str) {}

    /// For a tier several servers share: agree on which of them computes
    /// `key` (one lease per key fleet-wide). `None`: nothing to agree on.
    fn claim(&self, _key: &Key) -> Option<BoxFuture<'static, Claim>> {
        None
    }

    /// The live entry under `key`, if this tier holds it.
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Entry>>>;

    /// Copy `entry`, found in a tier behind this one, into this one. Runs
    /// only if no write to `key` committed since the lookup began.
    fn promote(&self, key: &Key, entry: &Entry);

    /// A client's write (KV `PUT`): answers once this tier holds it.
    fn put<'a>(&'a self, key: &'a Key, entry: &'a Entry) -> BoxFuture<'a, Result<()>>;

    /// A computed result, already admitted and in memory: queue its write.
    /// `None` when this tier keeps nothing to wait for.
    fn write_back(&self, key: &Key, entry: &Entry) -> Result<Option<Pending>>;

    /// Remove `key`; answers once the removal holds, with whether this
    /// tier held it.
    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool>>;

    /// Remove every entry of `namespace`; answers how many this tier held.
    fn drop_namespace(&self, namespace: u32) -> BoxFuture<'_, Result<u64>>;
}
