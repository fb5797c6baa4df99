//! Prometheus metrics (names are part of the contract, ARCHITECTURE.md §4).
//!
//! Each component's metric handles (cheap `Arc` clones) live with the code
//! that bumps them on its hot path (`memo::counters`, `infer::metrics`);
//! the server creates them once, in its [`Telemetry`], and [`Metrics`]
//! registers them all and renders the text format. Gauges that describe
//! state (entries, bytes) come from a usage snapshot taken at scrape time
//! instead of being kept in step on every write.

use prometheus_client::{
    encoding::text::encode,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    memo::{SharedMetrics, Tier, TierLabel},
    store::Usage,
    telemetry::Telemetry,
};

/// The registry of every metric the server exposes.
pub struct Metrics {
    registry: Registry,
    entries: Family<TierLabel, Gauge>,
    bytes: Family<TierLabel, Gauge>,
}

impl Metrics {
    /// Every metric of `telemetry`, and the shared tier's when there is one.
    pub fn new(telemetry: &Telemetry, shared: Option<&SharedMetrics>) -> Metrics {
        let mut registry = Registry::with_prefix("infercache");
        telemetry.cache.register(&mut registry);
        if let Some(shared) = shared {
            shared.register(&mut registry);
        }
        let entries = Family::<TierLabel, Gauge>::default();
        let bytes = Family::<TierLabel, Gauge>::default();
        registry.register("entries", "Entries held per tier", entries.clone());
        registry.register("bytes", "Bytes charged per tier", bytes.clone());
        telemetry.models.register(&mut registry);
        Metrics {
            registry,
            entries,
            bytes,
        }
    }

    /// Prometheus text exposition of every metric; `usage` is what each
    /// tier holds now (a snapshot, read at scrape time by the caller).
    pub fn render(&self, usage: &[(Tier, Usage)]) -> String {
        for &(tier, usage) in usage {
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
