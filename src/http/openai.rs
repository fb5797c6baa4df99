//! OpenAI-compatible `POST /v1/embeddings`, memoized per text.
//!
//! Errors on this endpoint take OpenAI's shape, `{"error": {"message",
//! "type", "param", "code"}}`, so OpenAI clients report them properly; the
//! status still comes from the one mapping in [`super::error`].

use std::sync::Arc;

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{cache_policy, read_body, AppState, X_CACHE};
use crate::error::Error;

/// An error in OpenAI's shape.
pub struct OpenAiError(Error);

impl From<Error> for OpenAiError {
    fn from(e: Error) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let kind = match &self.0 {
            Error::Overloaded(_) => "rate_limit_error",
            Error::Unauthorized => "authentication_error",
            Error::NotFound(_) => "not_found_error",
            _ if status.is_client_error() => "invalid_request_error",
            _ => "server_error",
        };
        let body = json!({"error": {"message": self.0.to_string(), "type": kind, "param": null, "code": null}});
        let mut response = (status, Json(body)).into_response();
        if matches!(self.0, Error::Overloaded(_) | Error::ShuttingDown) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    /// Accepted when it equals the model's own size.
    dimensions: Option<usize>,
}

fn texts(input: Value) -> Result<Vec<String>, Error> {
    match input {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                other => Err(Error::BadRequest(format!(
                    "input[{i}] must be a string, got {}",
                    kind_of(&other)
                ))),
            })
            .collect(),
        other => Err(Error::BadRequest(format!(
            "input must be a string or an array of strings, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number (token ids are not accepted; send text)",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OpenAiError> {
    let body = read_body(&headers, body, state.config().max_request_size).await?;
    let request: EmbeddingsRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("malformed embeddings request: {e}")))?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "encoding_format must be \"float\" or \"base64\", got \"{other}\""
            ))
            .into())
        }
    };
    let texts = texts(request.input)?;
    let result = state
        .inference
        .embed(&request.model, texts, cache_policy(&headers))
        .await?;
    let dim = result.vectors.first().map_or(0, |v| v.len() / 4);
    if let Some(d) = request.dimensions.filter(|d| *d != dim) {
        return Err(Error::BadRequest(format!(
            "dimensions {d} is not supported; model `{}` gives {dim}",
            request.model
        ))
        .into());
    }
    let data: Vec<Value> = result
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                Value::String(base64::engine::general_purpose::STANDARD.encode(v))
            } else {
                v.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect::<Vec<f32>>()
                    .into()
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
    });
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(result.status.as_str()));
    Ok(response)
}
