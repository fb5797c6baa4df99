//! The request body's read timeout: a body that waits longer than the
//! configured time for its next frame fails, so a client that stops
//! sending mid-body frees its connection (see `listen`'s guards).
//!
//! The same deadline as `tower_http`'s `TimeoutBody` (the timeout counts
//! from the first poll that finds no frame ready), but the timer is armed
//! only then: a body whose frames are already buffered, as a small request
//! body usually is, costs no timer at all (ARCHITECTURE.md §1, "The hot
//! path").

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{sleep, Sleep};

/// `body` failing after `timeout` without a frame.
pub(super) struct ReadTimeout<B> {
    body: B,
    timeout: Duration,
    /// Armed while the body has been found waiting for its next frame.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<B> ReadTimeout<B> {
    pub(super) fn new(timeout: Duration, body: B) -> Self {
        Self {
            body,
            timeout,
            waiting: None,
        }
    }
}

/// The error a body that timed out fails with.
#[derive(Debug)]
struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("data was not received within the designated timeout")
    }
}

impl std::error::Error for TimedOut {}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let waiting = this.waiting.get_or_insert_with(|| Box::pin(sleep(timeout)));
        ready!(waiting.as_mut().poll(cx));
        Poll::Ready(Some(Err(TimedOut.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_sending_times_out() {
        let silent = StreamBody::new(stream::pending::<Result<Frame<Bytes>, axum::BoxError>>());
        let err = ReadTimeout::new(Duration::from_secs(5), silent)
            .collect()
            .await
            .expect_err("a silent body fails");
        assert!(err.is::<TimedOut>(), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_body_is_read_whole() {
        let body = ReadTimeout::new(Duration::from_secs(5), Full::new(Bytes::from("abc")));
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read, "abc");
    }
}
