//! `run`: wire the store and the HTTP API to a listener, and shut down
//! gracefully.
//!
//! Shutdown order matters for durability: stop accepting, let in-flight
//! requests finish (each PUT is answered only after its commit; requests
//! still running at the listener's drain deadline, 30 s, have their
//! connections closed), then flush the disk writer and close redb. Nothing acknowledged is lost, and a
//! clean close means the next start opens instantly.

use std::{future::Future, sync::Arc, time::Instant};

use axum::serve::Listener;

use crate::{
    config::{Config, Live},
    error::Result,
    http::{router, AppState},
    infer::{budget::Budget, registry::Registry, Inference},
    listen::{serve, Limits},
    memo::Memo,
    metrics::{Metrics, ModelMetrics},
    store::Store,
};

/// Serve the API on `listener` until `shutdown` completes.
pub async fn run<L: Listener>(
    listener: L,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_live(listener, crate::config::fixed(config), shutdown).await
}

/// [`run`] with a live configuration: every value sent on the channel's
/// sender (e.g. by a SIGHUP reload, see [`Config::reloaded`]) takes effect
/// for the next request, batch and write.
pub async fn run_live<L: Listener>(
    listener: L,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let config = live.borrow().clone();
    if let crate::config::Listen::Tcp(addr) = &config.listen {
        if !addr.ip().is_loopback() && config.auth_token.is_none() {
            tracing::warn!(
                %addr,
                "listening beyond loopback without --auth-token: anyone who can reach this address can read, write and delete cache entries"
            );
        }
    }
    let store = Store::open(config.store_options()).await?;
    let model_metrics = ModelMetrics::default();
    let budget = Budget::new(config.vram_units, model_metrics.vram_units_in_use.clone());
    let registry = Registry::load(&config, &store, &budget, &model_metrics, &live).await?;
    let inference = Inference::new(registry, Memo::new(store.clone()), live.clone());
    let metrics = Metrics::new(&store, &model_metrics);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    tokio::spawn(follow_reloads(live.clone(), store.clone()));
    let state = Arc::new(AppState {
        live,
        store: store.clone(),
        inference,
        budget,
        metrics,
        started: Instant::now(),
        stopping,
    });
    let limits = Limits::new(config.max_connections, config.header_timeout);
    let app = router(state);
    serve(listener, app, limits, shutdown).await;
    tracing::info!("connections drained; flushing the disk writer");
    store.close().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Apply reloaded settings that live in components rather than being read
/// per request.
async fn follow_reloads(mut live: Live, store: Store) {
    while live.changed().await.is_ok() {
        let limit = live.borrow_and_update().max_value_size;
        store.set_max_value_size(limit);
    }
}
