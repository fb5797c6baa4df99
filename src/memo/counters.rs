//! The read path's counters (names are part of the contract, ARCHITECTURE.md
//! §4): hits per tier, misses, coalesced waits, computations running,
//! computed results that never reached disk.
//!
//! Bumped in `memo/` and nowhere else: hits and KV misses by the chain
//! ([`crate::memo::chain`]), misses and coalesced waits by the memoizer,
//! running computations and dropped writes by the in-flight map. `metrics.rs` registers them.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::tier::Tier;

/// Label of per-tier series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TierLabel {
    pub(crate) tier: &'static str,
}

/// Counters of the cache's read path.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    hits: Family<TierLabel, Counter>,
    misses: Counter,
    coalesced: Counter,
    pub(crate) in_flight: Gauge,
    /// Computed results answered but never written to disk (its writer's
    /// queue was full, or the commit failed).
    pub(crate) writes_dropped: Counter,
}

impl CacheMetrics {
    /// The hits series of `tier`: resolve it once, so the hit path skips
    /// the family's label lookup.
    pub(crate) fn hits_of(&self, tier: Tier) -> Counter {
        self.hits
            .get_or_create(&TierLabel {
                tier: tier.as_str(),
            })
            .clone()
    }

    pub(crate) fn miss(&self) {
        self.misses.inc();
    }

    pub(crate) fn coalesced(&self) {
        self.coalesced.inc();
    }

    pub fn hits(&self, tier: Tier) -> u64 {
        self.hits_of(tier).get()
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    pub fn coalesced_count(&self) -> u64 {
        self.coalesced.get()
    }

    /// Computations running now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Computed results that never reached disk.
    pub fn writes_dropped(&self) -> u64 {
        self.writes_dropped.get()
    }

    /// Register the series under their contract names.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let hits = "Reads answered from a cache tier";
        let misses = "Reads found in no tier that caused a computation (or a KV 404)";
        let coalesced = "Reads answered by another caller's computation";
        let in_flight = "Computations running now";
        let dropped =
            "Computed results answered but not written to disk (queue full, failed commit)";
        registry.register("cache_hits", hits, self.hits.clone());
        registry.register("cache_misses", misses, self.misses.clone());
        registry.register("coalesced", coalesced, self.coalesced.clone());
        registry.register("in_flight", in_flight, self.in_flight.clone());
        registry.register("writes_dropped", dropped, self.writes_dropped.clone());
    }
}
