//! `run`: wire the store and the HTTP API to a listener, and shut down
//! gracefully.
//!
//! Shutdown order matters for durability: stop accepting, let in-flight
//! requests finish (each PUT is answered only after its commit), then flush
//! the disk writer and close redb. Nothing acknowledged is lost, and a
//! clean close means the next start opens instantly.

use std::{future::Future, sync::Arc, time::Instant};

use axum::serve::Listener;

use crate::{
    config::Config,
    error::Result,
    http::{router, AppState},
    infer::{budget::Budget, registry::Registry, Inference},
    memo::Memo,
    metrics::{Metrics, ModelMetrics},
    store::Store,
};

/// Serve the API on `listener` until `shutdown` completes.
pub async fn run<L>(
    listener: L,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let store = Store::open(config.store_options()).await?;
    let model_metrics = ModelMetrics::default();
    let budget = Budget::new(config.vram_units, model_metrics.vram_units_in_use.clone());
    let registry = Registry::load(&config, &store, &budget, &model_metrics).await?;
    let inference = Inference::new(registry, Memo::new(store.clone()), config.request_timeout);
    let metrics = Metrics::new(&store, &model_metrics);
    let state = Arc::new(AppState {
        config,
        store: store.clone(),
        inference,
        budget,
        metrics,
        started: Instant::now(),
    });
    let app = router(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("stopped accepting; flushing the disk writer");
    store.close().await;
    served.map_err(|e| crate::error::Error::Storage(format!("server error: {e}")))?;
    tracing::info!("shut down cleanly");
    Ok(())
}
