//! The shared tier's series (names are part of the contract, README:
//! Operations): `infercache_shared_ops_total{op,result}`,
//! `infercache_shared_op_seconds` and `infercache_shared_up`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug)]
pub(crate) struct SharedMetrics {
    ops: Family<OpLabels, Counter>,
    pub(crate) latency: Histogram,
    /// 1 while Redis answers, 0 while the breaker is open.
    pub(crate) up: Gauge,
}

impl Default for SharedMetrics {
    fn default() -> Self {
        // 100 us .. ~1.6 s
        let buckets = prometheus_client::metrics::histogram::exponential_buckets(1e-4, 2.0, 15);
        SharedMetrics {
            ops: Family::default(),
            latency: Histogram::new(buckets),
            up: Gauge::default(),
        }
    }
}

impl SharedMetrics {
    pub(crate) fn op(&self, op: &'static str, result: &'static str) {
        self.ops.get_or_create(&OpLabels { op, result }).inc();
    }

    /// How many `op` calls ended with `result`.
    pub(crate) fn count(&self, op: &'static str, result: &'static str) -> u64 {
        self.ops.get_or_create(&OpLabels { op, result }).get()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.get() == 1
    }

    /// Register the series under their contract names.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let ops = "Calls of the shared tier by operation and result";
        let latency = "Time of one call to the shared tier";
        let up = "1 while the shared tier's Redis answers, else 0";
        registry.register("shared_ops", ops, self.ops.clone());
        registry.register("shared_op_seconds", latency, self.latency.clone());
        registry.register("shared_up", up, self.up.clone());
    }
}
