//! What every front end (HTTP and gRPC) reaches: the shared [`AppState`],
//! and the request conventions both protocols follow the same way (bearer
//! token, `Cache-Control`, model versions).

use std::{sync::Arc, time::Instant};

use axum::http::{header, HeaderMap, HeaderName};
use subtle::ConstantTimeEq;

use crate::{
    config::{Config, Live},
    error::{Error, Result},
    infer::{budget::Budget, registry::Model, Inference},
    memo::{Policy, Store},
    metrics::Metrics,
    telemetry::Telemetry,
};

/// What every handler can reach.
pub struct AppState {
    /// The live configuration; read it with [`AppState::config`].
    pub live: Live,
    pub store: Store,
    pub inference: Inference,
    pub budget: Budget,
    pub metrics: Metrics,
    /// The events and counters every layer reports to.
    pub telemetry: Telemetry,
    pub started: Instant,
    /// Turns true when shutdown begins, ending long-lived streams.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// The configuration as of now (reloads swap it).
    pub fn config(&self) -> Arc<Config> {
        self.live.borrow().clone()
    }

    /// Whether an `Authorization` value passes: always when no token is
    /// configured, else only `Bearer TOKEN`. The comparison takes the same
    /// time wherever the first difference is.
    pub fn authorize(&self, authorization: Option<&[u8]>) -> Result<()> {
        // Borrowed, not cloned: every request passes here.
        let config = self.live.borrow();
        let Some(token) = &config.auth_token else {
            return Ok(());
        };
        let given = authorization
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if bool::from(given.ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }

    /// [`AppState::authorize`] for an HTTP request: its `Authorization`
    /// header is looked up only when a token is configured.
    pub fn authorize_headers(&self, headers: &HeaderMap) -> Result<()> {
        if self.live.borrow().auth_token.is_none() {
            return Ok(());
        }
        let given = headers.get(header::AUTHORIZATION);
        self.authorize(given.map(|v| v.as_bytes()))
    }

    /// The model `name` at `version`; only version "1" exists (an empty or
    /// absent version means it).
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>> {
        let model = self.inference.registry.get(name)?;
        match version {
            None | Some("" | "1") => Ok(model),
            Some(v) => Err(Error::NotFound(format!(
                "model `{name}` has no version `{v}`; its only version is 1"
            ))),
        }
    }
}

/// `X-Cache: hit | coalesced | miss` on every cached answer (REST headers,
/// gRPC metadata).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The policy of a request's `Cache-Control` headers (gRPC metadata are
/// headers too): `no-cache` recomputes, `no-store` does not store.
pub fn cache_policy(headers: &HeaderMap) -> Policy {
    let mut policy = Policy::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        let value = value.to_str().unwrap_or_default();
        for directive in value.split(',') {
            match directive.trim().to_ascii_lowercase().as_str() {
                "no-cache" => policy.read = false,
                "no-store" => policy.write = false,
                _ => {}
            }
        }
    }
    policy
}
