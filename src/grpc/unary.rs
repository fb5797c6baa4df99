//! `ModelInfer` without tonic's generic machinery, for the common call:
//! one uncompressed message in, one message and `grpc-status: 0` out.
//!
//! A memory hit is cheap enough that the framework around it is most of
//! its cost. Under callgrind a single-row hit cost about 107,000 server
//! instructions either way, gRPC or binary REST; of gRPC's, about 12,500
//! went to tonic's unary path (its boxed service future, the 8 KiB decode
//! and encode buffers, the streaming decoder draining the body after the
//! message, the encoding body and its trailers), and more to the tonic
//! router and the body boxes around it. Here the body is read into the
//! chunks it arrived in, the message decoded from them in place, and the
//! answer written straight into one buffer (`answer`) sent as one data
//! frame, then the trailers (BENCHMARKS.md, "gRPC vs binary REST").
//!
//! Only the ordinary call is answered here. Anything else is replayed,
//! chunk for chunk, to the tonic service, which answers it exactly as it
//! always has: a `grpc-encoding` header (tonic refuses or decompresses),
//! request trailers (tonic merges them into the metadata), a body error, a
//! compressed flag, no message, a partial or a second message, a prefix
//! over `max_request_size` (the `limit` wrapper refuses it), a message prost
//! cannot decode. So the fast path changes the cost of a call, never its
//! answer; the checks of the call itself (bearer token, cache policy,
//! `x-cache`) are the same function as tonic's handler.

use std::convert::Infallible;

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderMap, HeaderName, HeaderValue},
    response::Response,
    Router,
};
use bytes::Bytes;
use futures::{stream, StreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use prost::Message;
use tower::ServiceExt;

use super::{answer, limit::Prefixes, proto::ModelInferRequest, service};
use crate::state::AppState;

/// The RPC answered here.
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// Whether a gRPC request is a `ModelInfer` this module may answer.
pub fn takes(request: &Request) -> bool {
    request.uri().path() == MODEL_INFER && !request.headers().contains_key(GRPC_ENCODING)
}

/// Answer a `ModelInfer`, here or, when it is out of the ordinary, through
/// `tonic` (the tonic service with its size limit).
pub async fn model_infer(state: &AppState, tonic: &Router, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let received = receive(body, state.config().max_request_size).await;
    let Some(message) = received.message() else {
        return replay(tonic, Request::from_parts(parts, received.into_body())).await;
    };
    let Ok(message) = ModelInferRequest::decode(message) else {
        return replay(tonic, Request::from_parts(parts, received.into_body())).await;
    };
    let answer = service::model_infer(state, &parts.headers, message)
        .await
        .and_then(|a| {
            let framed = answer::framed(a.model.name(), &a.id, &a.response)?;
            Ok((framed, a.response.status))
        });
    match answer {
        Ok((framed, status)) => {
            let trailers = HeaderMap::from_iter([(GRPC_STATUS, HeaderValue::from_static("0"))]);
            let frames = stream::iter([
                Ok::<_, Infallible>(Frame::data(framed)),
                Ok(Frame::trailers(trailers)),
            ]);
            let mut response = Response::new(Body::new(StreamBody::new(frames)));
            let headers = response.headers_mut();
            headers.insert(
                crate::state::X_CACHE,
                HeaderValue::from_static(status.as_str()),
            );
            headers.insert(header::CONTENT_TYPE, GRPC);
            response
        }
        // Trailers-only, as tonic answers a failed unary call.
        Err(status) => status.into_http(),
    }
}

async fn replay(tonic: &Router, request: Request) -> Response {
    match tonic.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A request body as far as it was read: the data chunks, then how it went
/// on (`end`: a trailers frame or an error) and what is left of it.
struct Received {
    chunks: Vec<Bytes>,
    prefixes: Prefixes,
    end: Option<Result<Frame<Bytes>, axum::Error>>,
    rest: Body,
    /// The body ended after its data.
    ended: bool,
}

/// Read `body` to its end, unless it turns out not to be exactly one
/// message of at most `max` bytes: then stop where that shows.
async fn receive(mut body: Body, max: u64) -> Received {
    let mut chunks = Vec::with_capacity(1);
    let mut prefixes = Prefixes::new(max);
    let (end, ended) = loop {
        match body.frame().await {
            None => break (None, true),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let refused = prefixes.feed(&data).is_err();
                    chunks.push(data);
                    if refused || prefixes.past_first() {
                        break (None, false);
                    }
                }
                Err(trailers) => break (Some(Ok(trailers)), false),
            },
            Some(Err(e)) => break (Some(Err(e)), false),
        }
    };
    Received {
        chunks,
        prefixes,
        end,
        rest: body,
        ended,
    }
}

impl Received {
    /// The message, when the body was exactly one uncompressed message.
    fn message(&self) -> Option<Bytes> {
        let one = self.ended && self.end.is_none() && self.prefixes.one_whole();
        let whole = match &self.chunks[..] {
            _ if !one => return None,
            [chunk] => chunk.clone(),
            chunks => chunks.concat().into(),
        };
        (whole.first() == Some(&0)).then(|| whole.slice(5..))
    }

    /// The body again, as tonic would have read it.
    fn into_body(self) -> Body {
        let over = self.ended || matches!(self.end, Some(Err(_)));
        let rest = if over { Body::empty() } else { self.rest };
        let read = self
            .chunks
            .into_iter()
            .map(|chunk| Ok(Frame::data(chunk)))
            .chain(self.end);
        Body::new(StreamBody::new(
            stream::iter(read).chain(BodyStream::new(rest)),
        ))
    }
}
