//! Live reload: where the configuration comes from ([`Source`]) and the
//! loop that reads it again on every signal (SIGHUP in the binary) and
//! publishes the result once to everything that holds a setting.
//!
//! A reload is all or nothing: an invalid file keeps the whole current
//! configuration and logs why. Settings a running server cannot change
//! (the `fixed` sections of `config/`) keep their values and are named in
//! one log line; the `live` ones reach handlers through the config `watch`,
//! each model's batcher and lookups through the model's own `watch` of its
//! knobs, and the store's value limit through its setter.

use std::sync::Arc;

use futures::{stream::BoxStream, Stream, StreamExt};
use tokio::sync::watch;

use crate::{config::Config, state::AppState, ServeArgs};

/// The server's configuration and, if it reloads, how and when.
pub struct Source {
    pub(crate) config: Config,
    pub(crate) reload: Option<(ServeArgs, BoxStream<'static, ()>)>,
}

impl From<Config> for Source {
    /// A configuration that never changes.
    fn from(config: Config) -> Source {
        Source {
            config,
            reload: None,
        }
    }
}

impl Source {
    /// `config`, read again from `args` (the flags, variables and the
    /// file they name) each time `signal` yields.
    pub fn reloading(
        config: Config,
        args: ServeArgs,
        signal: impl Stream<Item = ()> + Send + 'static,
    ) -> Source {
        Source {
            config,
            reload: Some((args, signal.boxed())),
        }
    }
}

/// Re-read `args` on every `signal` and publish what changed, until the
/// signal stream ends (or the task is aborted at shutdown).
pub(crate) async fn follow(
    args: ServeArgs,
    mut signal: BoxStream<'static, ()>,
    publish: watch::Sender<Arc<Config>>,
    state: Arc<AppState>,
) {
    while signal.next().await.is_some() {
        let current = publish.borrow().clone();
        match current.reloaded(&args) {
            Ok((next, kept)) => {
                if kept.is_empty() {
                    tracing::info!("configuration reloaded");
                } else {
                    tracing::warn!(
                        "configuration reloaded; these cannot change while running and keep their values: {}",
                        kept.join(", ")
                    );
                }
                state.store.set_max_value_size(next.max_value_size);
                state.inference.registry.publish(&next);
                publish.send_replace(Arc::new(next));
            }
            Err(e) => tracing::error!("configuration reload failed, keeping the current one: {e}"),
        }
    }
}
