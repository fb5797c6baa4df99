//! [`Telemetry`]: what every layer reports to, created once at the top and
//! handed down.
//!
//! Cache events (the `/v1/events` stream), the read path's counters and
//! the model metrics are shared by layers that never otherwise meet: the
//! disk writer and the batchers emit events, `memo/` counts hits, the
//! batchers time their runs, and `/metrics` and `/v1/stats` read them all.
//! `server::run` creates one `Telemetry` and hands each layer its part, so
//! no layer reaches up or sideways for it (ARCHITECTURE.md §1), and a
//! library user who opens a [`crate::Store`] alone gets a private one.

use crate::{events::Events, infer::metrics::ModelMetrics, memo::CacheMetrics};

/// The server's events and metrics. Cheap to clone; clones share.
#[derive(Clone, Default)]
pub struct Telemetry {
    /// Cache events, streamed at `/v1/events`.
    pub events: Events,
    /// Hits per tier, misses, coalesced waits, computations running.
    pub cache: CacheMetrics,
    /// Runs, rows, batch sizes, run times, queue depth, VRAM in use.
    pub models: ModelMetrics,
}
