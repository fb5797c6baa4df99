//! The fleet's announcements: one pub/sub connection per server, on
//! [`wire::CHANNEL`], that turns what other servers announce (a deleted
//! key, a dropped model) into [`Invalidation`]s of this server's local
//! tiers, which the chain applies. It reconnects and subscribes again by
//! itself, to the next node of a cluster's seed list each time (a cluster
//! forwards a `PUBLISH` to every node, so any one node will do); after a
//! reconnection every model's generation is read again, since an
//! announcement may have been missed meanwhile.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use super::wire;
use crate::store::Key;

/// What the local tiers must drop.
#[derive(Debug)]
pub(crate) enum Invalidation {
    Key(Key),
    Namespace(u32),
}

/// Pause between two attempts to (re)subscribe.
const RETRY: Duration = Duration::from_millis(250);

/// Listen until `stop`'s sender is dropped (the tier is closed): each
/// message `heard` turns into an invalidation goes to `local`;
/// `subscribed` runs after each (re)subscription. `nodes` are tried in
/// turn, one per attempt.
pub(crate) async fn listen(
    heard: impl Fn(&[u8]) -> Option<Invalidation>,
    subscribed: impl Fn(),
    nodes: Vec<redis::Client>,
    local: mpsc::Sender<Invalidation>,
    mut stop: watch::Receiver<()>,
) {
    for client in nodes.iter().cycle() {
        let session = async {
            let connect = client.get_async_pubsub();
            let mut pubsub = tokio::time::timeout(Duration::from_secs(1), connect)
                .await
                .map_err(|_| {
                    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })??;
            pubsub.subscribe(wire::CHANNEL).await?;
            subscribed();
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                if let Some(invalidation) = heard(message.get_payload_bytes()) {
                    // A full queue waits: a dropped invalidation would
                    // leave a stale copy here.
                    if local.send(invalidation).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok::<_, redis::RedisError>(())
        };
        tokio::select! {
            _ = stop.changed() => return,
            ended = session => tracing::debug!(?ended, "shared tier: announcements connection ended"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}
