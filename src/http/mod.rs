//! HTTP front end: routes grouped by API, one shared [`AppState`].
//!
//! - [`kv`]: the plain key-value cache (`/v1/kv/{key}`)
//! - [`kserve`]: KServe v2 inference (`/v2/...`)
//! - [`openai`]: OpenAI-compatible embeddings (`/v1/embeddings`)
//! - [`ops`]: health, stats and Prometheus metrics
//!
//! Every handler returns `Result<_, Error>`; [`error`] turns errors into
//! statuses. Authentication is one middleware in front of everything but
//! the health checks.

pub mod error;
mod kserve;
mod kv;
mod openai;
mod ops;

use std::{sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderName},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Router,
};
use bytes::Bytes;
use subtle::ConstantTimeEq;

use crate::{
    config::{Config, Live},
    error::{Error, Result},
    infer::{budget::Budget, Inference},
    memo::Policy,
    metrics::Metrics,
    store::Store,
};

/// What every handler can reach.
pub struct AppState {
    /// The live configuration; read it with [`AppState::config`].
    pub live: Live,
    pub store: Store,
    pub inference: Inference,
    pub budget: Budget,
    pub metrics: Metrics,
    pub started: Instant,
    /// Turns true when shutdown begins, ending long-lived streams.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// The configuration as of now (reloads swap it).
    pub fn config(&self) -> Arc<Config> {
        self.live.borrow().clone()
    }
}

/// `X-Cache: hit | coalesced | miss` on every cached endpoint.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// `Cache-Control: no-cache` recomputes; `no-store` does not store.
pub fn cache_policy(headers: &HeaderMap) -> Policy {
    let mut policy = Policy::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        for directive in value.to_str().unwrap_or_default().split(',') {
            match directive.trim().to_ascii_lowercase().as_str() {
                "no-cache" => policy.read = false,
                "no-store" => policy.write = false,
                _ => {}
            }
        }
    }
    policy
}

/// Read a whole body of at most `limit` bytes; larger: 413, early when
/// `Content-Length` says so.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Error::TooLarge { limit });
    }
    axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Error::TooLarge { limit }
            } else {
                Error::BadRequest(format!("could not read the request body: {e}"))
            }
        })
}

/// The whole HTTP API.
pub fn router(state: Arc<AppState>) -> Router {
    let kv = get(kv::get).put(kv::put).delete(kv::delete);
    let protected = Router::new()
        .route("/v1/kv/", kv.clone())
        .route("/v1/kv/{*key}", kv)
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/models/{model}", get(kserve::model_metadata))
        .route("/v2/models/{model}/ready", get(kserve::model_ready))
        .route("/v2/models/{model}/infer", post(kserve::infer))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(kserve::model_metadata),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(kserve::model_ready),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(kserve::infer),
        )
        .route("/v1/stats", get(ops::stats))
        .route("/v1/events", get(ops::events))
        .route(
            "/v1/models/{model}/cache",
            axum::routing::delete(ops::drop_model_cache),
        )
        .route("/metrics", get(ops::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .merge(protected)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.config().body_timeout,
        ))
        .with_state(state)
}

/// Require `Authorization: Bearer TOKEN` when a token is configured. The
/// comparison takes the same time wherever the first difference is.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    if let Some(token) = &state.config().auth_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if !bool::from(given.ct_eq(token.as_bytes())) {
            return Err(Error::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}
