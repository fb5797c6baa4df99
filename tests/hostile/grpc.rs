//! KServe v2 gRPC: random and malformed `ModelInferRequest`s.
//!
//! The oracle comes from the contract, not the code: a well-formed request
//! for a real model answers OK with the right output shape; anything else
//! answers a status of the protocol (INVALID_ARGUMENT or NOT_FOUND for a
//! message that decodes, INTERNAL for bytes that are not a message), never
//! a panic or a hang, and the server keeps answering `ServerLive`. Declared
//! sizes far beyond what was sent are refused quickly.

use std::{collections::HashMap, time::Instant};

use bytes::{BufMut, Bytes};
use infercache::grpc::proto::{
    grpc_inference_service_client::GrpcInferenceServiceClient,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
    InferTensorContents, ModelInferRequest, ModelInferResponse, ServerLiveRequest,
};
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestCaseError};
use prost::Message;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
    Code, Status,
};

use crate::{common::model, common::raw_http::HANG, runner, Harness, GRPC_CASES, QUICK};

/// The harness with a gRPC channel to its server (mlp and two_io).
struct Grpc {
    h: Harness,
    channel: Channel,
}

impl std::ops::Deref for Grpc {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl Grpc {
    fn start() -> Grpc {
        let h = Harness::start(|a| {
            a.models = vec![model("mlp", "mlp"), model("two_io", "two_io")];
            a.max_request_size = Some(bytesize::ByteSize::kib(256));
        });
        let channel = h.rt.block_on(async {
            tonic::transport::Endpoint::from_shared(format!("http://{}", h.addr))
                .unwrap()
                .connect()
                .await
                .unwrap()
        });
        Grpc { h, channel }
    }

    /// Run `GRPC_CASES` cases of `strategy` through `check`, then
    /// `ServerLive`.
    fn run<S: Strategy>(
        &self,
        strategy: S,
        check: impl Fn(&Channel, S::Value) -> Result<(), TestCaseError>,
    ) {
        let live = || {
            self.rt.block_on(async {
                let mut c = GrpcInferenceServiceClient::new(self.channel.clone());
                let live = tokio::time::timeout(HANG, c.server_live(ServerLiveRequest {})).await;
                prop_assert!(
                    matches!(live, Ok(Ok(ref r)) if r.get_ref().live),
                    "ServerLive after the case: {live:?}"
                );
                Ok(())
            })
        };
        let check = |case| check(&self.channel, case);
        self.h.run_then(runner(GRPC_CASES), strategy, check, live);
    }

    fn stop(self) {
        self.h.stop();
    }
}

// ---------------------------------------------------------------------------
// Structured requests: every field random, some of them right.
// ---------------------------------------------------------------------------

fn datatype() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec!["FP32", "INT64"]).prop_map(String::from),
        2 => select(vec!["BOOL", "UINT8", "INT8", "INT16", "UINT16", "INT32", "UINT32", "UINT64", "FP64"]).prop_map(String::from),
        1 => select(vec!["BYTES", "FP16", "BF16", "fp32", ""]).prop_map(String::from),
        1 => "\\PC{0,12}",
    ]
}

fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..6,
        2 => Just(16i64),
        2 => Just(4i64),
        1 => any::<i64>(),
        1 => select(vec![-1i64, i64::MAX, i64::MIN, 1 << 31, 1 << 40]),
    ]
}

/// Contents with one typed field filled: `len` values of `element`.
macro_rules! filled {
    ($field:ident, $element:expr, $len:expr) => {
        vec($element, $len).prop_map(|v| InferTensorContents {
            $field: v,
            ..Default::default()
        })
    };
}

fn contents() -> impl Strategy<Value = Option<InferTensorContents>> {
    let field = prop_oneof![
        filled!(fp32_contents, any::<f32>(), 0..70),
        filled!(int64_contents, any::<i64>(), 0..70),
        filled!(int_contents, any::<i32>(), 0..70),
        filled!(uint_contents, any::<u32>(), 0..70),
        filled!(bool_contents, any::<bool>(), 0..70),
        filled!(
            bytes_contents,
            vec(any::<u8>(), 0..8).prop_map(Bytes::from),
            0..4
        ),
    ];
    proptest::option::weighted(0.4, field)
}

fn input() -> impl Strategy<Value = InferInputTensor> {
    (
        prop_oneof![4 => select(vec!["x", "a", "b"]).prop_map(String::from), 1 => "\\PC{0,8}"],
        datatype(),
        vec(dim(), 0..4),
        contents(),
    )
        .prop_map(|(name, datatype, shape, contents)| InferInputTensor {
            name,
            datatype,
            shape,
            parameters: HashMap::new(),
            contents,
        })
}

fn request() -> impl Strategy<Value = ModelInferRequest> {
    (
        prop_oneof![4 => select(vec!["mlp", "two_io"]).prop_map(String::from), 1 => "\\PC{0,10}"],
        prop_oneof![4 => Just(String::new()), 1 => select(vec!["1", "2", "-1"]).prop_map(String::from)],
        vec(input(), 0..4),
        vec(
            prop_oneof![select(vec!["y", "sum", "count", "zz"]).prop_map(String::from), "\\PC{0,6}"],
            0..3,
        ),
        vec(vec(any::<u8>(), 0..300).prop_map(Bytes::from), 0..4),
    )
        .prop_map(|(model_name, model_version, inputs, outputs, raw)| ModelInferRequest {
            model_name,
            model_version,
            inputs,
            outputs: outputs
                .into_iter()
                .map(|name| InferRequestedOutputTensor { name, parameters: HashMap::new() })
                .collect(),
            raw_input_contents: raw,
            ..Default::default()
        })
}

/// Whether the contract says `r` must succeed: the mlp model, one FP32
/// input `x` of shape [n >= 1, 16] with exactly its bytes, outputs `y` or
/// none.
fn must_work(r: &ModelInferRequest) -> Option<i64> {
    let [x] = r.inputs.as_slice() else {
        return None;
    };
    let rows = *x.shape.first()?;
    let ok = r.model_name == "mlp"
        && matches!(r.model_version.as_str(), "" | "1")
        && x.name == "x"
        && x.datatype == "FP32"
        && x.shape.len() == 2
        && x.shape[1] == 16
        && rows >= 1
        && x.contents.is_none()
        && r.raw_input_contents.len() == 1
        && r.raw_input_contents[0].len() as i64 == rows * 64
        && r.outputs.iter().all(|o| o.name == "y");
    ok.then_some(rows)
}

/// A valid mlp request of `rows` rows.
fn valid(rows: usize) -> ModelInferRequest {
    let data: Vec<u8> = (0..rows * 16)
        .flat_map(|i| (i as f32 * 0.1).to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: "mlp".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![rows as i64, 16],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(data)],
        ..Default::default()
    }
}

fn check_answer(
    answer: Result<
        Result<tonic::Response<ModelInferResponse>, Status>,
        tokio::time::error::Elapsed,
    >,
    rows: Option<i64>,
    allowed: &[Code],
) -> Result<(), TestCaseError> {
    let answer = answer.map_err(|_| TestCaseError::fail("the request hung"))?;
    match (answer, rows) {
        (Ok(r), Some(rows)) => {
            prop_assert_eq!(&r.get_ref().outputs[0].shape, &vec![rows, 4]);
            prop_assert_eq!(r.get_ref().raw_output_contents[0].len() as i64, rows * 16);
        }
        (Ok(r), None) => prop_assert!(false, "accepted a bad request: {:?}", r.get_ref()),
        (Err(s), Some(_)) => prop_assert!(false, "refused a good request: {s}"),
        (Err(s), None) => {
            prop_assert!(allowed.contains(&s.code()), "unexpected status {s}");
            prop_assert!(!s.message().is_empty(), "a status without a message");
        }
    }
    Ok(())
}

#[test]
fn random_requests_get_protocol_statuses() {
    let h = Grpc::start();
    let strategy = prop_oneof![
        4 => request(),
        1 => (1usize..5).prop_map(valid),
    ];
    h.run(strategy, |channel, request| {
        let rows = must_work(&request);
        let mut c = GrpcInferenceServiceClient::new(channel.clone());
        let answer =
            h.rt.block_on(async { tokio::time::timeout(HANG, c.model_infer(request)).await });
        check_answer(answer, rows, &[Code::InvalidArgument, Code::NotFound])
    });
    h.stop();
}

// ---------------------------------------------------------------------------
// Malformed bytes: valid messages cut, flipped and padded, and plain junk,
// sent as they are through a codec that does not encode.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ModelInferResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ModelInferResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ModelInferResponse>, Status> {
        ModelInferResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
}

fn malformed() -> impl Strategy<Value = Bytes> {
    let mutated = (
        (1usize..4),
        vec(
            prop_oneof![
                any::<usize>().prop_map(Mutation::Truncate),
                (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
                (any::<usize>(), vec(any::<u8>(), 1..12)).prop_map(|(i, b)| Mutation::Insert(i, b)),
            ],
            1..4,
        ),
    )
        .prop_map(|(rows, mutations)| {
            let mut bytes = valid(rows).encode_to_vec();
            for m in mutations {
                let len = bytes.len().max(1);
                match m {
                    Mutation::Truncate(i) => bytes.truncate(i % len),
                    Mutation::Flip(i, x) if !bytes.is_empty() => bytes[i % len] ^= x,
                    Mutation::Flip(..) => {}
                    Mutation::Insert(i, b) => {
                        let at = i % (bytes.len() + 1);
                        bytes.splice(at..at, b);
                    }
                }
            }
            Bytes::from(bytes)
        });
    prop_oneof![3 => mutated, 1 => vec(any::<u8>(), 0..400).prop_map(Bytes::from)]
}

#[test]
fn malformed_messages_never_break_the_server() {
    let h = Grpc::start();
    h.run(malformed(), |channel, bytes| {
        // What the server should see, if the bytes decode at all.
        let rows = ModelInferRequest::decode(bytes.clone())
            .ok()
            .and_then(|r| must_work(&r));
        let answer = h.rt.block_on(async {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let path = "/inference.GRPCInferenceService/ModelInfer"
                .parse()
                .unwrap();
            tokio::time::timeout(HANG, grpc.unary(tonic::Request::new(bytes), path, RawCodec)).await
        });
        check_answer(
            answer,
            rows,
            &[Code::InvalidArgument, Code::NotFound, Code::Internal],
        )
    });
    h.stop();
}

#[test]
fn absurd_declared_sizes_are_refused_quickly() {
    let h = Grpc::start();
    let mut c = GrpcInferenceServiceClient::new(h.channel.clone());
    for shape in [
        vec![1i64 << 40, 16],
        vec![i64::MAX, 2],
        vec![1 << 20, 1 << 20, 1 << 20],
    ] {
        for raw in [true, false] {
            let mut r = valid(1);
            r.inputs[0].shape = shape.clone();
            if !raw {
                r.raw_input_contents.clear();
                r.inputs[0].contents = Some(InferTensorContents {
                    fp32_contents: vec![1.0; 16],
                    ..Default::default()
                });
            }
            let started = Instant::now();
            let err = h.rt.block_on(c.model_infer(r)).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{shape:?}: {err}");
            assert!(err.message().contains("max_request_size"), "{err}");
            assert!(
                started.elapsed() < QUICK,
                "{shape:?} took {:?}",
                started.elapsed()
            );
        }
    }
    h.stop();
}

/// A prefix declaring 1 GiB, then silence: the answer comes from the
/// prefix alone, without waiting for (or buffering) the message.
#[test]
fn an_oversized_message_is_refused_from_its_prefix() {
    use futures::StreamExt;
    use tower::{Service, ServiceExt};

    let h = Grpc::start();
    let answer = h.rt.block_on(async {
        let prefix = http_body::Frame::data(Bytes::from_static(&[0, 0x40, 0, 0, 0]));
        let frames = futures::stream::once(async { Ok::<_, Status>(prefix) })
            .chain(futures::stream::pending());
        let request =
            tonic::codegen::http::Request::post("/inference.GRPCInferenceService/ModelInfer")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(tonic::body::Body::new(http_body_util::StreamBody::new(
                    frames,
                )))
                .unwrap();
        let mut channel = h.channel.clone();
        let call = channel.ready().await.unwrap().call(request);
        tokio::time::timeout(QUICK, call).await
    });
    let response = answer.expect("answered before the message came").unwrap();
    let status = Status::from_header_map(response.headers()).expect("a trailers-only status");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(
        status
            .message()
            .contains("1073741824 bytes, more than max_request_size (262144 bytes)"),
        "{status}"
    );
    h.stop();
}

// ---------------------------------------------------------------------------
// The fast path (`grpc/unary.rs`) and tonic answer every body alike.
// ---------------------------------------------------------------------------

/// A call's answer as it goes over the wire: HTTP status, headers but the
/// date, the data, the trailers.
type Wire = (
    u16,
    Vec<(String, String)>,
    Bytes,
    Option<Vec<(String, String)>>,
);

fn sorted(headers: &tonic::codegen::http::HeaderMap) -> Vec<(String, String)> {
    let mut all: Vec<_> = headers
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    all.sort();
    all
}

/// `ModelInfer` with a body of `frames`; `tonic_only` adds `grpc-encoding:
/// identity`, which tonic reads as no compression and the fast path leaves
/// to tonic.
async fn raw_infer(
    channel: &Channel,
    frames: &[http_body::Frame<Bytes>],
    tonic_only: bool,
) -> Wire {
    use http_body_util::BodyExt;
    use tower::{Service, ServiceExt};

    let frames: Vec<_> = frames
        .iter()
        .map(|f| match f.data_ref() {
            Some(data) => http_body::Frame::data(data.clone()),
            None => http_body::Frame::trailers(f.trailers_ref().unwrap().clone()),
        })
        .map(Ok::<_, Status>)
        .collect();
    let mut request =
        tonic::codegen::http::Request::post("/inference.GRPCInferenceService/ModelInfer")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
    if tonic_only {
        request = request.header("grpc-encoding", "identity");
    }
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
    let request = request.body(tonic::body::Body::new(body)).unwrap();
    let mut channel = channel.clone();
    let call = channel.ready().await.unwrap().call(request);
    let response = tokio::time::timeout(HANG, call).await.unwrap().unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap();
    let trailers = body.trailers().map(sorted);
    (
        parts.status.as_u16(),
        sorted(&parts.headers),
        body.to_bytes(),
        trailers,
    )
}

/// Valid, split, doubled, cut, compressed, oversized, malformed, trailed
/// and unknown-model bodies: the same answer, byte for byte, whichever
/// path takes them.
#[test]
fn the_fast_path_answers_as_tonic_does() {
    let h = Grpc::start();
    let framed = |message: &[u8], flag: u8| {
        let mut m = vec![flag];
        m.extend((message.len() as u32).to_be_bytes());
        m.extend_from_slice(message);
        Bytes::from(m)
    };
    let data = |b: &Bytes| http_body::Frame::data(b.clone());
    let one = framed(&valid(2).encode_to_vec(), 0);
    let mut unknown = valid(1);
    unknown.model_name = "nope".into();
    let mut trailers = tonic::codegen::http::HeaderMap::new();
    trailers.insert("x-extra", "1".parse().unwrap());
    let cases: Vec<(&str, Vec<http_body::Frame<Bytes>>)> = vec![
        ("one message", vec![data(&one)]),
        (
            "one message in pieces",
            one.chunks(7)
                .map(|c| data(&Bytes::copy_from_slice(c)))
                .collect(),
        ),
        ("two messages", vec![data(&one), data(&one)]),
        (
            "a message and a cut prefix",
            vec![data(&one), data(&one.slice(..3))],
        ),
        ("a cut message", vec![data(&one.slice(..one.len() - 1))]),
        ("no message", vec![]),
        (
            "compressed flag",
            vec![data(&framed(&valid(1).encode_to_vec(), 1))],
        ),
        (
            "bad flag",
            vec![data(&framed(&valid(1).encode_to_vec(), 7))],
        ),
        (
            "a message, then an oversized prefix",
            vec![data(&one), data(&Bytes::from_static(&[0, 0x40, 0, 0, 0]))],
        ),
        ("not protobuf", vec![data(&framed(&[0xff; 9], 0))]),
        (
            "unknown model",
            vec![data(&framed(&unknown.encode_to_vec(), 0))],
        ),
        (
            "request trailers",
            vec![data(&one), http_body::Frame::trailers(trailers)],
        ),
    ];
    h.rt.block_on(async {
        for (name, frames) in &cases {
            // The first call computes; both compared calls are then hits.
            raw_infer(&h.channel, frames, true).await;
            let tonic = raw_infer(&h.channel, frames, true).await;
            let fast = raw_infer(&h.channel, frames, false).await;
            assert_eq!(fast, tonic, "{name}");
        }
    });
    h.stop();
}
