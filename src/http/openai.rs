//! OpenAI-compatible `POST /v1/embeddings`, memoized per text.
//!
//! Errors on this endpoint, a missing token included, take OpenAI's shape
//! ([`OpenAiError`]), so OpenAI clients report them properly.
//!
//! `input` is parsed straight into strings (never into a JSON tree, which
//! costs ~16x the text for many short items), and the parse stops at
//! [`MAX_TEXTS`]. Big bodies are parsed and answered on the blocking pool.

use std::{fmt, sync::Arc};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::{
    de::{self, SeqAccess, Visitor},
    Deserialize, Deserializer,
};
use serde_json::{json, Value};

use super::{cache_policy, error::OpenAiError, read_body, AppState, X_CACHE};
use crate::{
    blocking::off_runtime,
    error::{Error, Limit},
};

/// Most texts one request may carry while parsing; the model's own
/// `max_inputs` then bounds it further.
pub const MAX_TEXTS: usize = 1 << 16;

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Texts,
    encoding_format: Option<String>,
    /// Accepted when it equals the model's own size.
    dimensions: Option<usize>,
}

/// `input`: one string or an array of strings.
struct Texts(Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One array item: a string, or the error naming its index.
        struct Item(usize);
        impl<'de> de::DeserializeSeed<'de> for Item {
            type Value = String;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for Item {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "input[{}] must be a string (token ids are not accepted; send text)",
                    self.0
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
        }
        struct Input;
        impl<'de> Visitor<'de> for Input {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("input must be a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Texts, E> {
                Ok(Texts(vec![v]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
                let mut texts = Vec::new();
                while let Some(text) = seq.next_element_seed(Item(texts.len()))? {
                    if texts.len() == MAX_TEXTS {
                        return Err(de::Error::custom(format!(
                            "input has more than {MAX_TEXTS} texts"
                        )));
                    }
                    texts.push(text);
                }
                Ok(Texts(texts))
            }
        }
        d.deserialize_any(Input)
    }
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OpenAiError> {
    let body = read_body(body, state.config().max_request_size, Limit::RequestSize).await?;
    let request: EmbeddingsRequest = off_runtime(body.len(), move || {
        serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("malformed embeddings request: {e}")))
    })
    .await?;
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
    let result = state
        .inference
        .embed(&request.model, request.input.0, cache_policy(&headers))
        .await?;
    let dim = result.vectors.first().map_or(0, |v| v.len() / 4);
    if let Some(d) = request.dimensions.filter(|d| *d != dim) {
        return Err(Error::BadRequest(format!(
            "dimensions {d} is not supported; model `{}` gives {dim}",
            request.model
        ))
        .into());
    }
    let size = result.vectors.iter().map(|v| v.len()).sum();
    let (model, tokens, vectors) = (request.model, result.tokens, result.vectors);
    let body = off_runtime(size, move || {
        let data: Vec<Value> = vectors
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
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        });
        Ok(serde_json::to_vec(&body).expect("a JSON value always serializes"))
    })
    .await?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(result.status.as_str()));
    Ok(response)
}
