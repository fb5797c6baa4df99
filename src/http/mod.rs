//! HTTP front end: routes grouped by API, one shared [`AppState`].
//!
//! - [`kv`]: the plain key-value cache (`/v1/kv/{key}`)
//! - [`ops`]: health, stats and Prometheus metrics
//!
//! Every handler returns `Result<_, Error>`; [`error`] turns errors into
//! statuses. Authentication is one middleware in front of everything but
//! the health checks.

pub mod error;
mod kv;
mod ops;

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{Request, State},
    http::header,
    middleware::{self, Next},
    response::Response,
    routing::get,
    Router,
};
use subtle::ConstantTimeEq;

use crate::{config::Config, error::Error, metrics::Metrics, store::Store};

/// What every handler can reach.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    pub started: Instant,
}

/// The whole HTTP API.
pub fn router(state: Arc<AppState>) -> Router {
    let kv = get(kv::get).put(kv::put).delete(kv::delete);
    let protected = Router::new()
        .route("/v1/kv/", kv.clone())
        .route("/v1/kv/{*key}", kv)
        .route("/v1/stats", get(ops::stats))
        .route("/metrics", get(ops::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .merge(protected)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// Require `Authorization: Bearer TOKEN` when a token is configured. The
/// comparison takes the same time wherever the first difference is.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    if let Some(token) = &state.config.auth_token {
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
