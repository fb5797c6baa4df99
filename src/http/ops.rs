//! Operations endpoints: liveness, stats as JSON, Prometheus metrics.

use std::sync::Arc;

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Json},
};
use serde_json::{json, Value};

use super::AppState;
use crate::store::Tier;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn stats(State(state): State<Arc<AppState>>) -> Json<Value> {
    let store = &state.store;
    let (memory, disk) = store.usage();
    let m = store.metrics();
    Json(json!({
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "memory": {
            "entries": memory.entries,
            "bytes": memory.bytes,
            "capacity": state.config.memory_capacity,
            "hits": m.hits(Tier::Memory),
        },
        "disk": {
            "entries": disk.entries,
            "bytes": disk.bytes,
            "capacity": state.config.disk_capacity,
            "hits": m.hits(Tier::Disk),
        },
        "misses": m.misses(),
        "coalesced": m.coalesced_count(),
        "in_flight": m.in_flight(),
        "models": state.inference.registry.names(),
        "vram_units": state.config.vram_units,
        "vram_units_peak": state.budget.peak(),
    }))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.store),
    )
}
