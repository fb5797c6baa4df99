//! `run`: wire the store and the HTTP API to a listener, and shut down
//! gracefully.
//!
//! Shutdown order matters for durability: stop accepting, let in-flight
//! requests finish (each PUT is answered only after its commit), then flush
//! the disk writer and close redb. Nothing acknowledged is lost, and a
//! clean close means the next start opens instantly.

use std::{future::Future, io, path::Path, sync::Arc, time::Instant};

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
    let registry = Registry::load(&config, &store, &budget, &model_metrics).await?;
    let inference = Inference::new(registry, Memo::new(store.clone()), config.request_timeout);
    let metrics = Metrics::new(&store, &model_metrics);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let state = Arc::new(AppState {
        config,
        store: store.clone(),
        inference,
        budget,
        metrics,
        started: Instant::now(),
        stopping,
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

/// Bind a Unix socket at `path` with mode 0660 (owner and group may
/// connect). A stale socket file left by a crashed server is replaced; a
/// socket a live server answers on, or a file that is not a socket, is left
/// alone and reported. The socket is bound under a temporary name, given
/// its mode, then renamed into place, so it is never reachable with looser
/// permissions.
pub fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            tracing::info!(path = %path.display(), "replacing a stale socket file");
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.tmp", std::process::id()));
    let staging = std::path::PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let listener = tokio::net::UnixListener::bind(&staging)?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o660))?;
    std::fs::rename(&staging, path)?;
    Ok(listener)
}
