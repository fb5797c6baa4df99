//! OpenAI's `GET /v1/models` and `GET /v1/models/{model}`: the text models
//! (those with a tokenizer, which `/v1/embeddings` serves), so OpenAI
//! tooling that discovers a server through `client.models.list()` finds
//! them. `created` is when this server started (and loaded them).

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Path, State},
    Json,
};
use serde_json::{json, Value};

use super::{error::OpenAiError, AppState};
use crate::error::Error;

fn entry(state: &AppState, name: &str) -> Value {
    let started = SystemTime::now()
        .checked_sub(state.started.elapsed())
        .unwrap_or(UNIX_EPOCH);
    let created = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({ "id": name, "object": "model", "created": created, "owned_by": "infercache" })
}

fn is_text_model(state: &AppState, name: &str) -> bool {
    state
        .inference
        .registry
        .get(name)
        .is_ok_and(|m| m.text.is_some())
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state
        .inference
        .registry
        .names()
        .iter()
        .filter(|name| is_text_model(&state, name))
        .map(|name| entry(&state, name))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    if !is_text_model(&state, &model) {
        return Err(Error::NotFound(format!(
            "no text model named `{model}`; GET /v1/models lists them"
        ))
        .into());
    }
    Ok(Json(entry(&state, &model)))
}
