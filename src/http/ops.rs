//! Operations endpoints: liveness, stats as JSON, Prometheus metrics.

use std::sync::Arc;

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::header,
    http::StatusCode,
    response::{
        sse::{Event as SseEvent, KeepAlive, Sse},
        IntoResponse, Json, Response,
    },
};
use serde_json::{json, Value};

use super::AppState;
use crate::{
    error::{Error, Result},
    memo::Tier,
};

/// `GET /healthz`: 200 when healthy; 503 while disk writes fail. With a
/// shared tier it also says whether Redis answers (`"shared": "up" |
/// "down"`), which never makes it fail: the local tiers still serve.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let mut body = if state.store.disk_healthy() {
        json!({ "status": "ok" })
    } else {
        json!({
            "status": "degraded",
            "error": "disk writes are failing (reads still work); restart to reopen the database",
        })
    };
    if let Some(shared) = state.store.shared() {
        body["shared"] = json!(if shared.is_up() { "up" } else { "down" });
    }
    let status = match state.store.disk_healthy() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(body)).into_response()
}

pub async fn stats(State(state): State<Arc<AppState>>) -> Json<Value> {
    let store = &state.store;
    let config = state.config();
    let (memory, disk) = store.usage();
    let m = &state.telemetry.cache;
    let mut stats = json!({
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "memory": {
            "entries": memory.entries,
            "bytes": memory.bytes,
            "capacity": config.memory_capacity,
            "hits": m.hits(Tier::Memory),
        },
        "disk": {
            "entries": disk.entries,
            "bytes": disk.bytes,
            "capacity": config.disk_capacity,
            "hits": m.hits(Tier::Disk),
        },
        "misses": m.misses(),
        "coalesced": m.coalesced_count(),
        "in_flight": m.in_flight(),
        "models": state.inference.registry.names(),
        "vram_units": config.vram_units,
        "vram_units_peak": state.budget.peak(),
    });
    if let Some(shared) = store.shared() {
        stats["shared"] = json!({
            "up": shared.is_up(),
            "hits": m.hits(Tier::Shared),
            "gets": {
                "hit": shared.count("get", "hit"),
                "miss": shared.count("get", "miss"),
                "error": shared.count("get", "error"),
                "timeout": shared.count("get", "timeout"),
                "skipped": shared.count("get", "skipped"),
            },
            "sets": {
                "ok": shared.count("set", "ok"),
                "error": shared.count("set", "error"),
                "timeout": shared.count("set", "timeout"),
                "skipped": shared.count("set", "skipped"),
                "dropped": shared.count("set", "dropped"),
                "too_large": shared.count("set", "too_large"),
            },
        });
    }
    Json(stats)
}

/// `GET /v1/events`: cache events as Server-Sent Events until the client
/// leaves or the server starts shutting down.
pub async fn events(
    State(state): State<Arc<AppState>>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let subscriber = state.telemetry.events.subscribe();
    let stream = futures::stream::unfold(
        (subscriber, state.stopping.clone()),
        |(mut subscriber, mut stopping)| async move {
            let event = tokio::select! {
                event = subscriber.next() => event?,
                _ = stopping.wait_for(|stop| *stop) => return None,
            };
            let sse = SseEvent::default()
                .event(event.name())
                .json_data(&event)
                .unwrap_or_else(|e| SseEvent::default().comment(e.to_string()));
            Some((Ok(sse), (subscriber, stopping)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `DELETE /v1/models/{model}/cache`: drop one model's results.
pub async fn drop_model_cache(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    let Path(name) = path.map_err(|e| Error::BadRequest(e.body_text()))?;
    let model = state.inference.registry.get(&name)?;
    let deleted = state.store.drop_namespace(model.namespace).await?;
    tracing::info!(model = %name, deleted, "dropped a model's cached results");
    Ok(Json(json!({ "model": name, "deleted": deleted })))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let (memory, disk) = state.store.usage();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state
            .metrics
            .render(&[(Tier::Memory, memory), (Tier::Disk, disk)]),
    )
}
