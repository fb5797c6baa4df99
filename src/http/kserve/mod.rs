//! KServe v2 / Open Inference Protocol REST endpoints (what Triton's
//! `tritonclient.http` speaks): server and model metadata, health, and
//! infer with JSON or binary tensors. Every infer goes through
//! [`crate::infer::Inference`], so results are memoized per row; a whole
//! answer whose rows were all hits is kept too ([`answers`]), so the same
//! request again skips decoding and encoding.

mod answers;
mod wire;

use std::{future::Future, sync::Arc};

use axum::{
    body::Body,
    extract::{rejection::PathRejection, Path, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{cache_policy, head::LastHead, read_body, AppState, X_CACHE};
use crate::{
    blocking::{in_place, off_runtime},
    error::{Error, Limit, Result},
    infer::{self, registry::Model},
    memo::{CacheStatus, Policy, Tier},
};

const HEADER_LENGTH: HeaderName = HeaderName::from_static("inference-header-content-length");

/// `{model}` and the optional `{version}` of a model route.
#[derive(Deserialize)]
pub struct ModelPath {
    model: String,
    version: Option<String>,
}

/// The model a route names.
fn model_of(state: &AppState, path: Result<Path<ModelPath>, PathRejection>) -> Result<Arc<Model>> {
    let Path(path) = path.map_err(|e| Error::BadRequest(e.body_text()))?;
    state.model(&path.model, path.version.as_deref())
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "infercache",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.inference.registry.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>> {
    let model = model_of(&state, path)?;
    let specs = |specs: &[crate::infer::backend::IoSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({ "name": s.name, "datatype": s.datatype.name(), "shape": s.shape }))
            .collect()
    };
    Ok(Json(json!({
        "name": model.name(),
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": specs(&model.inputs),
        "outputs": specs(&model.outputs),
    })))
}

pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>> {
    let model = model_of(&state, path)?;
    Ok(Json(json!({ "name": model.name(), "ready": true })))
}

pub async fn infer(
    State(state): State<Arc<AppState>>,
    path: Result<Path<ModelPath>, PathRejection>,
    request: Request<Body>,
) -> Result<Response<Full<Bytes>>> {
    let model = model_of(&state, path)?;
    infer_request(state, model, request).await
}

/// The hot route (ARCHITECTURE.md §1): the model of a `POST
/// /v2/models/{model}[/versions/{version}]/infer` with plain (unescaped)
/// names, an accepted token and a known model, which [`infer_request`]
/// then serves; `None` (the router serves it) for anything else.
pub(in crate::http) fn hot_model<B>(state: &AppState, request: &Request<B>) -> Option<Arc<Model>> {
    let (model, version) = infer_path(request)?;
    state.authorize_headers(request.headers()).ok()?;
    state.model(model, version).ok()
}

/// Infer with `model`, for the router ([`infer`]) and, without its
/// matching, extractors and layers, the hot route: any body (the hot route
/// reads hyper's own), and an answer whose body hyper writes unboxed.
///
/// The head is read before the future starts and not kept: the future
/// holds the body alone (a future is copied whole into its box, and every
/// byte it holds is copied again on the way).
pub(in crate::http) fn infer_request<B>(
    state: Arc<AppState>,
    model: Arc<Model>,
    request: Request<B>,
) -> impl Future<Output = Result<Response<Full<Bytes>>>> + Send
where
    B: http_body::Body<Data = Bytes> + Send + Unpin,
    B::Error: std::fmt::Display,
{
    let (parts, body) = request.into_parts();
    let asked = Asked::of(&state, &parts.headers);
    async move {
        let (answer, status) = infer_model(&state, model, asked?, body).await?;
        Ok(respond(answer, status))
    }
}

/// What an infer request's head asks for.
struct Asked {
    /// `Inference-Header-Content-Length`: the body's JSON header is this
    /// long and binary tensors follow.
    header_len: Option<usize>,
    /// `max_request_size` as of the request.
    limit: u64,
    policy: Policy,
}

impl Asked {
    fn of(state: &AppState, headers: &HeaderMap) -> Result<Asked> {
        let header_len = match headers.get(&HEADER_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        Error::BadRequest(
                            "Inference-Header-Content-Length must be a whole number".into(),
                        )
                    })?,
            ),
        };
        Ok(Asked {
            header_len,
            // Borrowed, not cloned: the hot route passes here.
            limit: state.live.borrow().max_request_size,
            policy: cache_policy(headers),
        })
    }
}

/// `{model}` and `{version}` of an infer request's path, when it is one
/// the hot route takes: `POST` (gRPC goes elsewhere first), no escapes.
fn infer_path<B>(request: &Request<B>) -> Option<(&str, Option<&str>)> {
    if request.method() != Method::POST {
        return None;
    }
    let rest = request.uri().path().strip_prefix("/v2/models/")?;
    let rest = rest.strip_suffix("/infer")?;
    // Byte by byte: a char pattern searcher costs more than these few
    // bytes (ARCHITECTURE.md §1, "The hot path").
    let (model, version) = match rest.bytes().position(|b| b == b'/') {
        Some(at) => (&rest[..at], Some(rest[at + 1..].strip_prefix("versions/")?)),
        None => (rest, None),
    };
    let plain = |s: &str| !s.is_empty() && !s.bytes().any(|b| b == b'/' || b == b'%');
    (plain(model) && version.is_none_or(plain)).then_some((model, version))
}

/// Infer with `model`: the body read, then answered from the answer cache
/// ([`answers`]) or by [`infer_rows`].
async fn infer_model<B>(
    state: &AppState,
    model: Arc<Model>,
    asked: Asked,
    body: B,
) -> Result<(answers::Answer, CacheStatus)>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let Asked {
        header_len,
        limit,
        policy,
    } = asked;
    let body = read_body(body, limit, Limit::RequestSize).await?;
    // Only a request that may read the cache can find or keep an answer
    // (a `no-cache` request's rows are never hits).
    let answer_key = if policy.read {
        let request = answers::Request::to(&model, header_len, limit, &body);
        let key = if in_place(body.len()) {
            request.key()
        } else {
            let (hashed, raw) = (model.clone(), body.clone());
            off_runtime(raw.len(), move || {
                Ok(answers::Request::to(&hashed, header_len, limit, &raw).key())
            })
            .await?
        };
        if let Some(answer) = answers::recall(&state.store, &key, &request) {
            return Ok((answer, CacheStatus::Hit(Tier::Memory)));
        }
        Some(key)
    } else {
        None
    };
    // Boxed: the answer hit above stays a small future.
    let rows = Rows {
        header_len,
        limit,
        policy,
        answer_key,
    };
    Box::pin(infer_rows(state, model, body, rows)).await
}

/// How [`infer_rows`] decodes a request and keeps its answer.
struct Rows {
    header_len: Option<usize>,
    limit: u64,
    policy: Policy,
    /// The answer's key, when the request may read the cache.
    answer_key: Option<answers::Key>,
}

/// Infer with `model`: the body decoded, memoized per row, encoded; the
/// answer kept when its rows were all hits.
async fn infer_rows(
    state: &AppState,
    model: Arc<Model>,
    body: Bytes,
    rows: Rows,
) -> Result<(answers::Answer, CacheStatus)> {
    let Rows {
        header_len,
        limit,
        policy,
        answer_key,
    } = rows;
    // Read before the rows are: a drop since keeps their answer out.
    let generation = state.store.generation(model.namespace);
    let raw = body.clone();
    let request = off_runtime(raw.len(), move || wire::decode(&raw, header_len, limit)).await?;
    let (response, rows) = state
        .inference
        .infer_keyed(
            model.name(),
            infer::Request {
                inputs: request.inputs,
                outputs: request.outputs,
                policy,
            },
        )
        .await?;
    let size = response.outputs.iter().map(|t| t.data.len()).sum();
    let (id, binary) = (request.id, request.binary);
    let status = response.status;
    let (encoded, model) = off_runtime(size, move || {
        let encoded = wire::encode(model.name(), id.as_deref(), &response.outputs, &binary);
        Ok((encoded, model))
    })
    .await?;
    let answer = answers::Answer {
        body: Bytes::from(encoded.body),
        header_len: encoded.header_len,
    };
    match answer_key {
        Some(key) if policy.write && matches!(status, CacheStatus::Hit(_)) => {
            let store = state.store.clone();
            let answer = off_runtime(rows.input_bytes() + body.len(), move || {
                let request = answers::Request::to(&model, header_len, limit, &body);
                answers::remember(&store, &key, &request, &answer, &rows, generation);
                Ok(answer)
            })
            .await?;
            Ok((answer, status))
        }
        _ => Ok((answer, status)),
    }
}

/// The HTTP response of an answer found as `status` says; its head copied
/// from the last one this thread built for the same status and header
/// length ([`super::head`]).
fn respond(answer: answers::Answer, status: CacheStatus) -> Response<Full<Bytes>> {
    thread_local! {
        static LAST: LastHead<(CacheStatus, Option<usize>)> = const { LastHead::new() };
    }
    let mut http = Response::new(Full::new(answer.body));
    *http.headers_mut() = LAST.with(|last| {
        last.get((status, answer.header_len), |(status, header_len)| {
            head(*status, *header_len)
        })
    });
    http
}

fn head(status: CacheStatus, header_len: Option<usize>) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(3);
    h.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
    match header_len {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    h
}
