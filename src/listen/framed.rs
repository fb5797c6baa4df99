//! Response bodies cut into frames of at most [`MAX_FRAME`] bytes.
//!
//! HTTP/1 connections copy each response behind its head and send both
//! with one `write` (hyper's flattened write strategy), a fifth cheaper
//! for a small cached value than queueing head and body for a `writev`
//! (ARCHITECTURE.md §1, "The hot path"). The copy lands in the
//! connection's write buffer, which keeps its capacity for the next
//! response: a whole 16 MiB value would leave 16 MiB behind on every
//! connection that once answered it. hyper stops taking frames once the
//! buffer holds `max_buf_size` bytes and writes it out; cut in frames, a
//! body never makes it grow much past that.

use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The largest data frame handed to hyper.
pub const MAX_FRAME: usize = 64 << 10;

pin_project_lite::pin_project! {
    /// `B`, with its data frames cut to [`MAX_FRAME`] bytes (slices of the
    /// same buffer, not copies).
    pub struct Framed<B> {
        #[pin]
        body: B,
        // What is left of a data frame longer than `MAX_FRAME`.
        rest: Bytes,
    }
}

impl<B> Framed<B> {
    pub fn new(body: B) -> Framed<B> {
        Framed {
            body,
            rest: Bytes::new(),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Framed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if this.rest.is_empty() {
            let data = match ready!(this.body.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            };
            if data.len() <= MAX_FRAME {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            *this.rest = data;
        }
        let len = this.rest.len().min(MAX_FRAME);
        Poll::Ready(Some(Ok(Frame::data(this.rest.split_to(len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn a_long_body_comes_in_frames_of_at_most_max_frame() {
        let value = Bytes::from((0..MAX_FRAME * 2 + 10).map(|i| i as u8).collect::<Vec<_>>());
        let mut body = Framed::new(Full::new(value.clone()));
        assert_eq!(body.size_hint().exact(), Some(value.len() as u64));
        let mut lengths = Vec::new();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            lengths.push(data.len());
            got.extend_from_slice(&data);
            assert_eq!(
                body.size_hint().exact(),
                Some((value.len() - got.len()) as u64)
            );
        }
        assert_eq!(lengths, [MAX_FRAME, MAX_FRAME, 10]);
        assert_eq!(got, value);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_short_body_is_one_frame_and_then_ends() {
        let mut body = Framed::new(Full::new(Bytes::from_static(b"value")));
        assert!(!body.is_end_stream());
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&data[..], b"value");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }
}
