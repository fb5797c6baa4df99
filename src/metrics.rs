//! Prometheus metrics (names are part of the contract, ARCHITECTURE.md §4).
//!
//! Each component owns its metric handles (cheap `Arc` clones) and counts
//! on its own hot path (the cache's in `memo::counters`); [`Metrics`]
//! registers them all once and renders the text format. Gauges that describe state (entries, bytes) are read from
//! their owners at scrape time instead of being kept in step on every write.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::memo::{Store, Tier, TierLabel};

/// Label of per-model series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub model: String,
}

type Histograms = Family<ModelLabel, Histogram, fn() -> Histogram>;

fn batch_buckets() -> Histogram {
    // 1, 2, 4, ... 1024 rows.
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

fn seconds_buckets() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Inference metrics, one series per model, plus the VRAM gauge.
#[derive(Clone, Debug)]
pub struct ModelMetrics {
    runs: Family<ModelLabel, Counter>,
    rows: Family<ModelLabel, Counter>,
    batch_size: Histograms,
    run_seconds: Histograms,
    queue_depth: Family<ModelLabel, Gauge>,
    pub vram_units_in_use: Gauge,
}

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics {
            runs: Family::default(),
            rows: Family::default(),
            batch_size: Family::new_with_constructor(batch_buckets),
            run_seconds: Family::new_with_constructor(seconds_buckets),
            queue_depth: Family::default(),
            vram_units_in_use: Gauge::default(),
        }
    }
}

/// One model's series, resolved once so the batcher never looks up labels.
#[derive(Clone, Debug)]
pub struct ModelSeries {
    pub runs: Counter,
    pub rows: Counter,
    pub batch_size: Histogram,
    pub run_seconds: Histogram,
    pub queue_depth: Gauge,
}

impl ModelMetrics {
    pub fn series(&self, model: &str) -> ModelSeries {
        let label = ModelLabel {
            model: model.to_string(),
        };
        ModelSeries {
            runs: self.runs.get_or_create(&label).clone(),
            rows: self.rows.get_or_create(&label).clone(),
            batch_size: self.batch_size.get_or_create(&label).clone(),
            run_seconds: self.run_seconds.get_or_create(&label).clone(),
            queue_depth: self.queue_depth.get_or_create(&label).clone(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register("model_runs", "ONNX Runtime session runs", self.runs.clone());
        registry.register(
            "model_rows",
            "Rows computed by model runs",
            self.rows.clone(),
        );
        registry.register("batch_size", "Rows per model run", self.batch_size.clone());
        registry.register(
            "model_run_seconds",
            "Duration of one model run",
            self.run_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Rows waiting in a model's batcher queue",
            self.queue_depth.clone(),
        );
        registry.register(
            "vram_units_in_use",
            "VRAM-budget units held by running models",
            self.vram_units_in_use.clone(),
        );
    }
}

/// The registry of every metric the server exposes.
pub struct Metrics {
    registry: Registry,
    entries: Family<TierLabel, Gauge>,
    bytes: Family<TierLabel, Gauge>,
}

impl Metrics {
    pub fn new(store: &Store, models: &ModelMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("infercache");
        store.metrics().register(&mut registry);
        if let Some(shared) = store.shared() {
            shared.register(&mut registry);
        }
        let entries = Family::<TierLabel, Gauge>::default();
        let bytes = Family::<TierLabel, Gauge>::default();
        registry.register("entries", "Entries held per tier", entries.clone());
        registry.register("bytes", "Bytes charged per tier", bytes.clone());
        models.register(&mut registry);
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
