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
//! kind is logged once, at `info`, when its response starts. Two hot
//! routes (a KV GET from memory, a KServe infer) are matched before all of
//! this, by [`App`] (ARCHITECTURE.md §1, "The hot path").

pub mod error;
mod head;
mod kserve;
mod kv;
mod models;
mod openai;
mod ops;
mod timeout;

use std::{
    convert::Infallible,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use bytes::Bytes;
use futures::future::{ready, BoxFuture, Either, FutureExt, Ready, TryFutureExt};
use http_body_util::Full;
use tower::Service;

use self::{error::OpenAiError, timeout::ReadTimeout};
pub use crate::state::AppState;
use crate::{
    error::{Error, Limit, Result},
    listen::{Framed, RequestBody, MAX_FRAME},
};

pub use crate::state::{cache_policy, X_CACHE};

/// Read a whole body of at most `limit` bytes, the limit `over` names;
/// larger: 413, early when
/// its declared length (`Content-Length`, which hyper's body reports as
/// its size) says so. Read frame by frame rather than through a limit
/// layer and a frame list: a small body is one frame, handed back as it is
/// (ARCHITECTURE.md §1, "The hot path"). Any body will do: the hot infer
/// route reads hyper's own, unboxed.
pub async fn read_body<B>(body: B, limit: u64, over: Limit) -> Result<Bytes>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    if body.size_hint().lower() > limit {
        return Err(Error::TooLarge { limit, over });
    }
    let mut body = body;
    // The first frame; once a second one comes, everything in `joined`.
    let mut first: Option<Bytes> = None;
    let mut joined = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Error::BadRequest(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let held = match &first {
            Some(first) if joined.is_empty() => first.len(),
            _ => joined.len(),
        };
        let read = held + data.len();
        if read as u64 > limit {
            return Err(Error::TooLarge { limit, over });
        }
        match &first {
            None => first = Some(data),
            Some(first) => {
                if joined.is_empty() {
                    joined.extend_from_slice(first);
                }
                joined.extend_from_slice(&data);
            }
        }
        // All that `Content-Length` announced: no need to wait for the end.
        if body.is_end_stream() {
            break;
        }
    }
    Ok(if joined.is_empty() {
        first.unwrap_or_default()
    } else {
        joined.freeze()
    })
}

/// Every API on one service, the one every connection is served by
/// (ARCHITECTURE.md §1, "The hot path"):
/// - the hot routes first, matched by hand: a KV `GET` the memory tier
///   answers, and a KServe `POST .../infer`; anything they do not take
///   (a miss, a refused token, an odd path) goes on unchanged;
/// - then gRPC by content type, and the HTTP router for the rest.
///
/// Every request is logged once, at `info`, when its response starts.
#[derive(Clone)]
pub struct App(Arc<Routes>);

struct Routes {
    state: Arc<AppState>,
    /// The longest wait for a request body's next frame (a restart
    /// setting), for every HTTP route.
    body_timeout: Duration,
    grpc: crate::grpc::Grpc,
    http: Router,
}

impl App {
    pub fn new(state: Arc<AppState>) -> App {
        App(Arc::new(Routes {
            grpc: crate::grpc::Grpc::new(state.clone()),
            http: http_routes(state.clone()),
            body_timeout: state.config().body_timeout,
            state,
        }))
    }
}

/// A response's body: whole bytes of at most one frame (the hot routes'
/// answers, which hyper writes without a box), or axum's (everything else),
/// cut in frames (see [`crate::listen::App::Body`]; boxed once more, to keep
/// this type, which every response moves through, small).
pub(crate) type ResponseBody = http_body_util::Either<Full<Bytes>, Body>;

/// `body` cut in frames, as a [`ResponseBody`].
fn framed<B>(body: B) -> ResponseBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    ResponseBody::Right(Body::new(Framed::new(body)))
}

/// `body` as a [`ResponseBody`]: unboxed when it fits one frame.
fn whole(body: Full<Bytes>) -> ResponseBody {
    if http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|len| len <= MAX_FRAME as u64)
    {
        ResponseBody::Left(body)
    } else {
        framed(body)
    }
}

/// The answer to one request.
type Answer = Result<Response<ResponseBody>, Infallible>;

impl crate::listen::App for App {
    type Body = ResponseBody;
    type Future = Either<Ready<Answer>, BoxFuture<'static, Answer>>;

    fn call(&self, request: Request<RequestBody>) -> Self::Future {
        let routes = &*self.0;
        // Only a logged request is timed, or copied for its line.
        let started = request_logged().then(Instant::now);
        if let Some(response) = kv::memory_hit(&routes.state, &request) {
            let response = response.map(whole);
            if let Some(started) = started {
                log_request(request.method(), request.uri(), &response, started);
            }
            return Either::Left(ready(Ok(response)));
        }
        let line = started.map(|at| (request.method().clone(), request.uri().clone(), at));
        if crate::grpc::is_grpc(request.headers()) {
            let answer = routes.grpc.clone().call(request.map(Body::new));
            return logged(answer.map_ok(|response| response.map(framed)), line);
        }
        let timeout = routes.body_timeout;
        // The hot routes read hyper's body unboxed and answer unboxed.
        if let Some(model) = kserve::hot_model(&routes.state, &request) {
            let request = request.map(|body| ReadTimeout::new(timeout, body));
            let answer = kserve::infer_request(routes.state.clone(), model, request);
            return logged(unboxed(answer), line);
        }
        if kv::is_hot_put(&routes.state, &request) {
            let request = request.map(|body| ReadTimeout::new(timeout, body));
            let answer = kv::hot_put(routes.state.clone(), request);
            return logged(unboxed(answer), line);
        }
        let request = request.map(|body| Body::new(ReadTimeout::new(timeout, body)));
        let answer = Service::call(&mut routes.http.clone(), request);
        logged(answer.map_ok(|response| response.map(framed)), line)
    }
}

/// A hot route's answer as a [`ResponseBody`]: whole, or its error.
fn unboxed(
    answer: impl Future<Output = Result<Response<Full<Bytes>>>> + Send + 'static,
) -> impl Future<Output = Answer> + Send + 'static {
    answer.map(|answer| {
        Ok(match answer {
            Ok(answer) => answer.map(whole),
            Err(error) => error.into_response().map(framed),
        })
    })
}

/// `answer`, boxed, and its request's `line` logged when its response
/// starts. Boxed as it is when nothing is logged: awaited inside another
/// future, its state would be held, and copied, twice.
fn logged<F>(answer: F, line: Option<(Method, Uri, Instant)>) -> <App as crate::listen::App>::Future
where
    F: Future<Output = Answer> + Send + 'static,
{
    let Some((method, uri, started)) = line else {
        return answer.boxed().right_future();
    };
    async move {
        let response = answer.await?;
        log_request(&method, &uri, &response, started);
        Ok(response)
    }
    .boxed()
    .right_future()
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
        .with_state(state)
}

/// Whether request lines are logged (`infercache::request` at `info`):
/// when not, a request is not copied for its line.
fn request_logged() -> bool {
    tracing::enabled!(target: "infercache::request", tracing::Level::INFO)
}

/// One `info` line per request: method, path, status (and gRPC status
/// when the call failed), cache status and the time to the response's
/// head.
fn log_request<B>(method: &Method, uri: &Uri, response: &Response<B>, started: Instant) {
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
        path = uri.path(),
        status = response.status().as_u16(),
        cache,
        grpc_status,
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
}

/// Require `Authorization: Bearer TOKEN` when a token is configured; the
/// refusal takes the error shape `E` of the routes it guards.
async fn authenticate<E: From<Error>>(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, E> {
    state.authorize_headers(request.headers())?;
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&'static str]) -> Body {
        let parts: Vec<_> = parts
            .iter()
            .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p.as_bytes())))
            .collect();
        Body::from_stream(futures::stream::iter(parts))
    }

    /// A body that declares its length and never sends a byte.
    struct Declared(u64);

    impl http_body::Body for Declared {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            std::task::Poll::Pending
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.0)
        }
    }

    #[tokio::test]
    async fn a_body_is_read_whole_within_its_limit() {
        for parts in [
            &[][..],
            &["abc"],
            &["", "a", "", "bc"],
            &["ab", "c"],
            &["a", "b", "c"],
        ] {
            let read = read_body(frames(parts), 3, Limit::ValueSize).await.unwrap();
            assert_eq!(read, parts.concat(), "{parts:?}");
        }
        for parts in [&["abcd"][..], &["ab", "cd"], &["a", "b", "c", "d"]] {
            let err = read_body(frames(parts), 3, Limit::ValueSize)
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::TooLarge { limit: 3, .. }),
                "{parts:?}: {err}"
            );
        }
        // A declared length over the limit is refused before any byte.
        let err = read_body(Declared(4), 3, Limit::ValueSize)
            .now_or_never()
            .expect("at once");
        assert!(
            matches!(err, Err(Error::TooLarge { limit: 3, .. })),
            "{err:?}"
        );
    }
}
