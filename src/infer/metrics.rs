//! Inference metrics (names are part of the contract, ARCHITECTURE.md §4):
//! runs, rows, batch sizes and run times per model, queue depth, and the
//! VRAM budget in use.
//!
//! They live with the code that bumps them (the batcher and the budget);
//! the server creates them once, in its [`crate::telemetry::Telemetry`],
//! and `metrics.rs` registers them for `/metrics`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

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

    pub(crate) fn register(&self, registry: &mut Registry) {
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
