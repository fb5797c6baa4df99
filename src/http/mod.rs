//! HTTP front end: routes grouped by API over the shared [`AppState`],
//! and the one service every connection is served by.
//!
//! - [`kv`]: the plain key-value cache (`/v1/kv/{key}`)
//! - [`kserve`]: KServe v2 inference (`/v2/...`)
//! - [`openai`]: OpenAI-compatible embeddings (`/v1/embeddings`)
//! - [`models`]: OpenAI's model list (`/v1/models`)
//! - [`ops`]: health, stats and Prometheus metrics
//!
//! Every handler returns `Result<_, Error>` (the OpenAI routes wrap it in
//! [`error::OpenAiError`] for OpenAI's error shape); [`error`] alone turns
//! errors into statuses and bodies. Authentication is one middleware in
//! front of everything but the health checks. Requests with `content-type: application/grpc` go to
//! [`crate::grpc`] instead, on the same listener; every request of either
//! kind is logged once, at `info`, when its response starts.

pub mod error;
mod kserve;
mod kv;
mod models;
mod openai;
mod ops;

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Router,
};
use bytes::Bytes;
use tower::Service;

use self::error::OpenAiError;
use crate::error::{Error, Result};
pub use crate::state::AppState;

pub use crate::state::{cache_policy, X_CACHE};

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

/// Every API on one service: gRPC by content type, HTTP otherwise.
pub fn router(state: Arc<AppState>) -> Router {
    let split = Split {
        grpc: crate::grpc::Grpc::new(state.clone()),
        http: http_routes(state),
    };
    Router::new()
        .fallback_service(split)
        .layer(middleware::from_fn(log_request))
}

/// The HTTP API.
fn http_routes(state: Arc<AppState>) -> Router {
    let kv = get(kv::get).put(kv::put).delete(kv::delete);
    // OpenAI clients read errors, a missing token included, in their shape.
    let openai = Router::new()
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::retrieve))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            authenticate::<OpenAiError>,
        ));
    let protected = Router::new()
        .route("/v1/kv/", kv.clone())
        .route("/v1/kv/{*key}", kv)
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
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            authenticate::<Error>,
        ))
        .merge(openai);
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

/// Sends gRPC requests to the gRPC service and the rest to the HTTP API.
#[derive(Clone)]
struct Split {
    grpc: crate::grpc::Grpc,
    http: Router,
}

impl Service<Request> for Split {
    type Response = Response;
    type Error = Infallible;
    type Future = crate::grpc::ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both routers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if crate::grpc::is_grpc(request.headers()) {
            self.grpc.call(request)
        } else {
            futures::future::Either::Left(self.http.call(request))
        }
    }
}

/// One `info` line per request: method, path, status (and gRPC status
/// when the call failed), cache status and the time to the response's
/// head.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let cache = response
        .headers()
        .get(X_CACHE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // A failed gRPC call answers its status in the head (trailers-only).
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok());
    tracing::info!(
        target: "infercache::request",
        %method,
        path,
        status = response.status().as_u16(),
        cache,
        grpc_status,
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// Require `Authorization: Bearer TOKEN` when a token is configured; the
/// refusal takes the error shape `E` of the routes it guards.
async fn authenticate<E: From<Error>>(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, E> {
    let given = request.headers().get(header::AUTHORIZATION);
    state.authorize(given.map(|v| v.as_bytes()))?;
    Ok(next.run(request).await)
}
