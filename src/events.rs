//! Cache events on a broadcast channel, served as Server-Sent Events at
//! `GET /v1/events`.
//!
//! Emitting never waits: the channel keeps the last [`CAPACITY`] events, and
//! a subscriber that falls further behind loses the oldest and is told how
//! many it missed (a `lagged` event) instead of slowing the server. With no
//! subscriber an event costs one failed send.

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for slow subscribers.
pub const CAPACITY: usize = 1024;

/// Something that happened to the cache or a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An entry was committed to disk (and mirrored in memory).
    Stored { namespace: u32, bytes: u64 },
    /// Entries were pushed out of a tier by its capacity.
    Evicted { tier: &'static str, count: u64 },
    /// Entries passed their deadline and were removed.
    Expired { tier: &'static str, count: u64 },
    /// Entries were removed on request (DELETE, model cache drop).
    Invalidated { namespace: u32, count: u64 },
    /// A model run finished.
    ModelRun {
        model: String,
        batch_size: usize,
        seconds: f64,
        ok: bool,
    },
    /// This subscriber fell behind and missed `missed` events.
    Lagged { missed: u64 },
}

impl Event {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Stored { .. } => "stored",
            Event::Evicted { .. } => "evicted",
            Event::Expired { .. } => "expired",
            Event::Invalidated { .. } => "invalidated",
            Event::ModelRun { .. } => "model_run",
            Event::Lagged { .. } => "lagged",
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    pub fn emit(&self, event: Event) {
        // An error only means nobody is subscribed.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> Subscriber {
        Subscriber {
            rx: self.tx.subscribe(),
        }
    }
}

/// One subscriber's view of the stream.
pub struct Subscriber {
    rx: broadcast::Receiver<Event>,
}

impl Subscriber {
    /// The next event, or `Lagged` when events were lost; `None` once the
    /// sender is gone.
    pub async fn next(&mut self) -> Option<Event> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Event::Lagged { missed }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let events = Events::default();
        let mut slow = events.subscribe();
        let total = CAPACITY as u64 + 100;
        for i in 0..total {
            events.emit(Event::Stored {
                namespace: 0,
                bytes: i,
            });
        }
        assert_eq!(slow.next().await, Some(Event::Lagged { missed: 100 }));
        assert_eq!(
            slow.next().await,
            Some(Event::Stored {
                namespace: 0,
                bytes: 100
            })
        );
        let json = serde_json::to_value(Event::Evicted {
            tier: "disk",
            count: 2,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "evicted", "tier": "disk", "count": 2})
        );
    }
}
