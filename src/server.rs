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

pub use crate::reload::Source;
use crate::{
    config::Config,
    error::Result,
    http::{App, AppState},
    infer::{budget::Budget, registry::Registry, Inference},
    listen::{serve, Limits},
    memo::{Memo, Store},
    metrics::Metrics,
    store::{SharedOptions, StoreOptions},
    telemetry::Telemetry,
};

/// Serve the API on `listener` until `shutdown` completes. `source` is a
/// [`Config`], or a [`Source::reloading`] one: on each reload signal the
/// configuration is read again and its live settings take effect for the
/// next request, batch and write (see `reload.rs`).
pub async fn run<L: Listener>(
    listener: L,
    source: impl Into<Source>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let Source { config, reload } = source.into();
    let (publish, live) = tokio::sync::watch::channel(Arc::new(config));
    let config = live.borrow().clone();
    if let crate::config::Listen::Tcp(addr) = &config.listen {
        if !addr.ip().is_loopback() && config.auth_token.is_none() {
            tracing::warn!(
                %addr,
                "listening beyond loopback without --auth-token: anyone who can reach this address can read, write and delete cache entries"
            );
        }
    }
    // Events and metrics, handed down to every layer that reports.
    let telemetry = Telemetry::default();
    let store = Store::open_reporting(
        store_options(&config),
        telemetry.events.clone(),
        telemetry.cache.clone(),
    )
    .await?;
    let budget = Budget::new(
        config.vram_units,
        telemetry.models.vram_units_in_use.clone(),
    );
    let registry = Registry::load(
        &config,
        &store,
        &budget,
        &telemetry.events,
        &telemetry.models,
    )
    .await?;
    let inference = Inference::new(registry, Memo::new(store.clone()), live.clone());
    let metrics = Metrics::new(&telemetry, store.shared());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let state = Arc::new(AppState {
        live,
        store: store.clone(),
        inference,
        budget,
        metrics,
        telemetry,
        started: Instant::now(),
        stopping,
    });
    let reloading = reload.map(|(args, signal)| {
        tokio::spawn(crate::reload::follow(args, signal, publish, state.clone()))
    });
    let limits = Limits::new(config.max_connections, config.header_timeout);
    let app = App::new(state);
    serve(listener, app, limits, shutdown).await;
    if let Some(task) = reloading {
        task.abort();
    }
    tracing::info!("connections drained; flushing the disk writer");
    store.close().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The part of the config the two-tier store needs.
// The update fills `disk_full`, which exists with the `testing` feature.
#[allow(clippy::needless_update)]
fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        dir: config.data_dir.clone(),
        memory_capacity: config.memory_capacity,
        disk_capacity: config.disk_capacity,
        max_value_size: config.max_value_size,
        write_queue: config.write_queue,
        write_batch: config.write_batch,
        write_delay: config.write_delay,
        sweep_interval: config.sweep_interval,
        shared: config.shared_url.clone().map(|url| SharedOptions {
            url,
            cluster: config.shared_cluster,
            timeout: config.shared_timeout,
            ttl: config.shared_ttl,
            max_value: config.shared_max_value,
        }),
        ..StoreOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store keeps its own defaults (it imports no config); they are
    /// the server's.
    #[test]
    fn store_defaults_are_the_servers() {
        assert_eq!(
            format!("{:?}", store_options(&Config::default())),
            format!("{:?}", StoreOptions::default())
        );
    }
}
