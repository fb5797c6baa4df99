//! The size bound of gRPC messages: a message whose 5-byte length prefix
//! declares more than `max_request_size` is refused with INVALID_ARGUMENT
//! (naming the setting) as soon as the prefix arrives, before any of the
//! message is buffered.
//!
//! tonic would refuse it too, from the same prefix, but with OUT_OF_RANGE
//! and its own wording; Triton's clients expect INVALID_ARGUMENT for sizes.
//! So the request body is watched here, frame prefix by frame prefix, and
//! the first oversized one ends the body with the status, which tonic
//! answers as is. tonic's own limit stays set to the same bound (it would
//! otherwise be 4 MiB) and is never the one that trips.
//!
//! The same framing follower tells `unary` whether a body is exactly one
//! message.

use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tonic::Status;

use crate::error::Error;

/// The request body, ended with INVALID_ARGUMENT at the first message
/// larger than `limit`.
pub fn limit(body: Body, limit: u64) -> Body {
    Body::new(Limited {
        inner: body,
        prefixes: Prefixes::new(limit),
        refused: None,
    })
}

struct Limited {
    inner: Body,
    prefixes: Prefixes,
    /// The refusal, once the messages before the oversized one are passed on.
    refused: Option<Status>,
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(status) = self.refused.take() {
            return Poll::Ready(Some(Err(status.into())));
        }
        let Some(frame) = ready!(Pin::new(&mut self.inner).poll_frame(cx)) else {
            return Poll::Ready(None);
        };
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            return Poll::Ready(Some(Ok(frame)));
        };
        Poll::Ready(Some(match self.prefixes.feed(data) {
            Ok(()) => Ok(frame),
            // The whole messages before it are still answered.
            Err((0, status)) => Err(status.into()),
            Err((at, status)) => {
                let before = data.slice(..at);
                self.refused = Some(status);
                Ok(Frame::data(before))
            }
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.refused.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Follows the message framing (1 byte compressed flag, 4 bytes big-endian
/// length, the message) across body chunks of any size.
pub(super) struct Prefixes {
    limit: u64,
    /// Prefix bytes seen so far of the next message.
    prefix: [u8; 5],
    filled: usize,
    /// Bytes of the current message still to come.
    message_left: u64,
    /// Messages whose prefix has been read.
    begun: u64,
}

impl Prefixes {
    pub(super) fn new(limit: u64) -> Prefixes {
        Prefixes {
            limit,
            prefix: [0; 5],
            filled: 0,
            message_left: 0,
            begun: 0,
        }
    }

    /// Whether what was fed is exactly one whole message.
    pub(super) fn one_whole(&self) -> bool {
        self.begun == 1 && self.message_left == 0 && self.filled == 0
    }

    /// Whether a second message has begun.
    pub(super) fn past_first(&self) -> bool {
        self.begun > 1 || (self.begun == 1 && self.message_left == 0 && self.filled > 0)
    }

    /// Follow one chunk; an oversized message is refused with where its
    /// prefix begins in the chunk (0 when it began in an earlier one).
    pub(super) fn feed(&mut self, chunk: &[u8]) -> Result<(), (usize, Status)> {
        let mut at = 0;
        while at < chunk.len() {
            let rest = &chunk[at..];
            if self.message_left > 0 {
                let n = rest
                    .len()
                    .min(usize::try_from(self.message_left).unwrap_or(usize::MAX));
                at += n;
                self.message_left -= n as u64;
                continue;
            }
            let begins = if self.filled == 0 { at } else { 0 };
            let n = rest.len().min(5 - self.filled);
            self.prefix[self.filled..self.filled + n].copy_from_slice(&rest[..n]);
            at += n;
            self.filled += n;
            if self.filled < 5 {
                break;
            }
            self.filled = 0;
            self.begun += 1;
            let [_, a, b, c, d] = self.prefix;
            let len = u64::from(u32::from_be_bytes([a, b, c, d]));
            if len > self.limit {
                return Err((begins, self.too_large(len)));
            }
            self.message_left = len;
        }
        Ok(())
    }

    fn too_large(&self, len: u64) -> Status {
        Error::BadRequest(format!(
            "the gRPC message is {len} bytes, more than max_request_size ({} bytes): \
             send fewer rows per request or raise max_request_size",
            self.limit
        ))
        .into()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend(len.to_be_bytes());
        m.extend(std::iter::repeat_n(7, len as usize));
        m
    }

    /// Messages at the bound pass, in chunks of any size; the first one
    /// over it is refused from its prefix, wherever the chunks split it.
    #[test]
    fn prefixes_are_followed_across_chunks() {
        let fits: Vec<u8> = [message(10), message(0), message(3)].concat();
        let over = [fits.clone(), message(11)[..5].to_vec()].concat();
        for chunk in [1, 2, 4, 5, 6, 9, over.len()] {
            let mut p = Prefixes::new(10);
            for piece in fits.chunks(chunk) {
                p.feed(piece).unwrap();
            }
            let mut p = Prefixes::new(10);
            let (i, (at, err)) = over
                .chunks(chunk)
                .enumerate()
                .find_map(|(i, piece)| Some((i, p.feed(piece).err()?)))
                .expect("the 11-byte message is refused");
            // Refused in the chunk that completes the prefix, at the
            // prefix's offset if it began in that chunk.
            let (first, last) = (fits.len(), over.len() - 1);
            assert_eq!(i, last / chunk, "chunk {chunk}");
            let begins = if first / chunk == i { first % chunk } else { 0 };
            assert_eq!(at, begins, "chunk {chunk}");
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().contains("11 bytes"), "{err}");
            assert!(
                err.message().contains("max_request_size (10 bytes)"),
                "{err}"
            );
        }
    }

    /// Exactly one whole message, wherever the chunks split it; a second
    /// one shows from its first byte.
    #[test]
    fn one_whole_message_is_told_apart() {
        let two = [message(3), message(0)].concat();
        for chunk in [1, 2, 5, 8, two.len()] {
            let mut p = Prefixes::new(10);
            for (i, piece) in two.chunks(chunk).enumerate() {
                let before = (i * chunk) as u64;
                p.feed(piece).unwrap();
                let fed = before + piece.len() as u64;
                assert_eq!(p.one_whole(), fed == 8, "chunk {chunk}, fed {fed}");
                assert_eq!(p.past_first(), fed > 8, "chunk {chunk}, fed {fed}");
            }
        }
        assert!(!Prefixes::new(10).one_whole());
    }

    #[test]
    fn the_largest_declared_length_is_refused() {
        let mut p = Prefixes::new(u64::from(u32::MAX) - 1);
        assert!(p.feed(&[0, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut p = Prefixes::new(u64::from(u32::MAX));
        assert!(p.feed(&[0, 0xff, 0xff, 0xff, 0xff]).is_ok());
    }
}
