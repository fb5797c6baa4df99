//! Prometheus metrics (names are part of the contract, DESIGN §4).
//!
//! Each component owns its metric handles (cheap `Arc` clones) and counts
//! on its own hot path; [`Metrics`] registers them all once and renders the
//! text format. Gauges that describe state (entries, bytes) are read from
//! their owners at scrape time instead of being kept in step on every write.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::store::{Store, Tier};

/// Label of per-tier series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: &'static str,
}

/// Hit and miss counters of the two-tier cache.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    hits: Family<TierLabel, Counter>,
    misses: Counter,
}

impl CacheMetrics {
    pub(crate) fn hit(&self, tier: Tier) {
        self.hits
            .get_or_create(&TierLabel {
                tier: tier.as_str(),
            })
            .inc();
    }

    pub(crate) fn miss(&self) {
        self.misses.inc();
    }

    pub fn hits(&self, tier: Tier) -> u64 {
        self.hits
            .get_or_create(&TierLabel {
                tier: tier.as_str(),
            })
            .get()
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }
}

/// The registry of every metric the server exposes.
pub struct Metrics {
    registry: Registry,
    entries: Family<TierLabel, Gauge>,
    bytes: Family<TierLabel, Gauge>,
}

impl Metrics {
    pub fn new(store: &Store) -> Metrics {
        let mut registry = Registry::with_prefix("infercache");
        let cache = store.metrics();
        registry.register(
            "cache_hits",
            "Reads answered from a cache tier",
            cache.hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Reads found in no tier",
            cache.misses.clone(),
        );
        let entries = Family::<TierLabel, Gauge>::default();
        let bytes = Family::<TierLabel, Gauge>::default();
        registry.register("entries", "Entries held per tier", entries.clone());
        registry.register("bytes", "Bytes charged per tier", bytes.clone());
        Metrics {
            registry,
            entries,
            bytes,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self, store: &Store) -> String {
        let (memory, disk) = store.usage();
        for (tier, usage) in [(Tier::Memory, memory), (Tier::Disk, disk)] {
            let label = TierLabel {
                tier: tier.as_str(),
            };
            self.entries.get_or_create(&label).set(usage.entries as i64);
            self.bytes.get_or_create(&label).set(usage.bytes as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
