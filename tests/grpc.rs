//! KServe v2 over gRPC against the real server (the same `run`, h2c on a
//! loopback port or a Unix socket) with a tonic client: metadata, one cache
//! shared with REST, requested outputs, streams, and the status codes of
//! every failure.

mod common;

use std::{collections::HashMap, path::Path};

use bytes::Bytes;
use common::{infer_mlp, metric, model, temp_dir, ChildServer, TestServer, UnixServer};
use futures::StreamExt;
use infercache::grpc::proto::{
    grpc_inference_service_client::GrpcInferenceServiceClient,
    infer_parameter::ParameterChoice,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use serde_json::json;
use tonic::{transport::Channel, Code};

type Client = GrpcInferenceServiceClient<Channel>;

async fn channel(base: &str) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(base.to_string()).unwrap();
    endpoint.connect().await.unwrap()
}

async fn client(base: &str) -> Client {
    GrpcInferenceServiceClient::new(channel(base).await)
}

async fn start(dir: &Path) -> TestServer {
    TestServer::start(dir, |a| {
        a.models = vec![model("mlp", "mlp"), model("two_io", "two_io")];
    })
    .await
}

async fn start_with_client(dir: &Path) -> (TestServer, Client) {
    let server = start(dir).await;
    let c = client(&server.base).await;
    (server, c)
}

async fn server_live(c: &mut Client) -> bool {
    let live = c.server_live(ServerLiveRequest {}).await.unwrap();
    live.into_inner().live
}

async fn server_ready(c: &mut Client) -> bool {
    let ready = c.server_ready(ServerReadyRequest {}).await.unwrap();
    ready.into_inner().ready
}

fn row(seed: u32) -> Vec<f32> {
    (0..16)
        .map(|i| ((seed * 16 + i) as f32 * 0.61).cos())
        .collect()
}

fn le(values: &[f32]) -> Bytes {
    Bytes::from(
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn tensor(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    }
}

/// An mlp request over `rows`, raw.
fn mlp(rows: &[Vec<f32>]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "mlp".into(),
        inputs: vec![tensor("x", "FP32", &[rows.len() as i64, 16])],
        raw_input_contents: vec![le(&rows.concat())],
        ..Default::default()
    }
}

fn cache_header(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("x-cache")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// (x-cache metadata, x-cache parameter, response)
async fn infer(c: &mut Client, request: ModelInferRequest) -> (String, String, ModelInferResponse) {
    let response = c.model_infer(request).await.unwrap();
    let header = cache_header(response.metadata());
    let body = response.into_inner();
    let Some(ParameterChoice::StringParam(param)) =
        body.parameters["x-cache"].parameter_choice.clone()
    else {
        panic!("x-cache parameter missing: {body:?}");
    };
    (header, param, body)
}

fn bits(raw: &Bytes) -> Vec<u32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()).to_bits())
        .collect()
}

#[tokio::test]
async fn health_and_metadata() {
    let dir = temp_dir();
    let (server, mut c) = start_with_client(dir.path()).await;
    assert!(server_live(&mut c).await);
    assert!(server_ready(&mut c).await);
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "infercache");
    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    for (name, version, want) in [
        ("mlp", "", true),
        ("mlp", "1", true),
        ("mlp", "2", false),
        ("nope", "", false),
    ] {
        let answer = c.model_ready(ready(name, version)).await.unwrap();
        assert_eq!(answer.into_inner().ready, want, "{name} {version}");
    }
    let meta = c
        .model_metadata(ModelMetadataRequest {
            name: "two_io".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let inputs: Vec<_> = meta
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str(), t.shape.clone()))
        .collect();
    assert_eq!(
        inputs,
        [("a", "FP32", vec![-1, 4]), ("b", "INT64", vec![-1, 4])]
    );
    assert_eq!(meta.versions, ["1"]);
    let missing = c
        .model_metadata(ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing}");
    server.stop().await;
}

#[tokio::test]
async fn one_cache_across_grpc_and_rest() {
    let dir = temp_dir();
    let (server, mut c) = start_with_client(dir.path()).await;
    // Computed over REST, a hit over gRPC, with the same bits.
    let rows = [row(1), row(2)];
    let (cache, rest_bits) = infer_mlp(&server, &rows).await;
    assert_eq!(cache, "miss");
    let (header, param, response) = infer(&mut c, mlp(&rows)).await;
    assert_eq!((header.as_str(), param.as_str()), ("hit", "hit"));
    assert_eq!(response.outputs[0].shape, [2, 4]);
    assert_eq!(response.outputs[0].datatype, "FP32");
    assert_eq!(bits(&response.raw_output_contents[0]), rest_bits);
    // Computed over gRPC (raw), a hit over gRPC typed contents and REST.
    let rows = [row(3)];
    let (header, _, first) = infer(&mut c, mlp(&rows)).await;
    assert_eq!(header, "miss");
    let mut typed = mlp(&rows);
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: rows.concat(),
        ..Default::default()
    });
    let (header, _, second) = infer(&mut c, typed).await;
    assert_eq!(header, "hit");
    assert_eq!(first.raw_output_contents, second.raw_output_contents);
    let (cache, rest_bits) = infer_mlp(&server, &rows).await;
    assert_eq!(cache, "hit");
    assert_eq!(bits(&first.raw_output_contents[0]), rest_bits);
    // A new row next to cached ones is computed alone; `no-cache` recomputes.
    let (header, _, _) = infer(&mut c, mlp(&[row(1), row(4), row(3)])).await;
    assert_eq!(header, "miss");
    let mut again = tonic::Request::new(mlp(&[row(4)]));
    again
        .metadata_mut()
        .insert("cache-control", "no-cache".parse().unwrap());
    let response = c.model_infer(again).await.unwrap();
    assert_eq!(cache_header(response.metadata()), "miss");
    let rows_total = common::metric(
        &server.client,
        &server.base,
        "infercache_model_rows_total{model=\"mlp\"}",
    )
    .await;
    assert_eq!(rows_total, 5.0, "rows 1, 2, 3, 4 and 4 recomputed");
    server.stop().await;
}

#[tokio::test]
async fn requested_outputs_and_ids_are_honoured() {
    let dir = temp_dir();
    let (server, mut c) = start_with_client(dir.path()).await;
    let a: Vec<f32> = vec![1.0, 2.0, 3.0, 4.0];
    let request = |outputs: &[&str]| ModelInferRequest {
        model_name: "two_io".into(),
        model_version: "1".into(),
        id: "req-7".into(),
        inputs: vec![tensor("b", "INT64", &[1, 4]), tensor("a", "FP32", &[1, 4])],
        outputs: outputs
            .iter()
            .map(|name| InferRequestedOutputTensor {
                name: name.to_string(),
                parameters: HashMap::new(),
            })
            .collect(),
        raw_input_contents: vec![
            Bytes::from(
                [5i64, 0, 7, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            ),
            le(&a),
        ],
        ..Default::default()
    };
    let (_, _, all) = infer(&mut c, request(&[])).await;
    let names: Vec<_> = all.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["sum", "count"]);
    assert_eq!(
        (all.id.as_str(), all.model_name.as_str()),
        ("req-7", "two_io")
    );
    let (_, _, one) = infer(&mut c, request(&["count"])).await;
    assert_eq!(one.outputs.len(), 1);
    assert_eq!(one.outputs[0].name, "count");
    assert_eq!(one.outputs[0].datatype, "INT64");
    assert_eq!(
        one.raw_output_contents,
        [all.raw_output_contents[1].clone()]
    );
    let err = c.model_infer(request(&["nope"])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_triton_codes() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.models = vec![model("mlp", "mlp")];
        a.max_request_size = Some(bytesize::ByteSize::kib(64));
    })
    .await;
    let mut c = client(&server.base).await;
    let with = |f: &dyn Fn(&mut ModelInferRequest)| {
        let mut r = mlp(&[row(0)]);
        f(&mut r);
        r
    };
    let big = || with(&|r| r.raw_input_contents[0] = Bytes::from(vec![0u8; 100 << 10]));
    let cases: Vec<(ModelInferRequest, Code, &str)> = vec![
        (
            with(&|r| r.model_name = "nope".into()),
            Code::NotFound,
            "no model",
        ),
        (
            with(&|r| r.model_version = "3".into()),
            Code::NotFound,
            "version",
        ),
        (
            with(&|r| r.inputs[0].shape = vec![1, 15]),
            Code::InvalidArgument,
            "shape",
        ),
        (
            with(&|r| r.inputs[0].datatype = "INT32".into()),
            Code::InvalidArgument,
            "must be FP32",
        ),
        (
            with(&|r| r.inputs[0].datatype = "BYTES".into()),
            Code::InvalidArgument,
            "unsupported",
        ),
        (
            with(&|r| r.inputs[0].name = "z".into()),
            Code::InvalidArgument,
            "no input `z`",
        ),
        (
            with(&|r| r.inputs[0].shape = vec![1 << 40, 16]),
            Code::InvalidArgument,
            "max_request_size",
        ),
        (
            with(&|r| r.raw_input_contents[0] = Bytes::from_static(&[0; 3])),
            Code::InvalidArgument,
            "needs 64 bytes",
        ),
        // Refused from the message's length prefix, before it is read.
        (
            big(),
            Code::InvalidArgument,
            "more than max_request_size (65536 bytes)",
        ),
    ];
    for (request, code, expect) in cases {
        let err = c.model_infer(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{expect}: {err}");
        assert!(err.message().contains(expect), "{expect}: {err}");
    }
    // A stream answers the messages before an oversized one, then ends
    // with its status.
    let answers: Vec<_> = c
        .model_stream_infer(futures::stream::iter([mlp(&[row(1)]), big()]))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0].as_ref().unwrap().infer_response.is_some());
    let err = answers[1].as_ref().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("max_request_size"), "{err}");
    // The server still answers.
    let (header, _, _) = infer(&mut c, mlp(&[row(0)])).await;
    assert_eq!(header, "miss");
    server.stop().await;
}

#[tokio::test]
async fn the_bearer_token_guards_grpc_but_not_liveness() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.models = vec![model("mlp", "mlp")];
        a.auth_token = Some("s3cret".into());
    })
    .await;
    let mut c = client(&server.base).await;
    assert!(server_live(&mut c).await);
    for token in [None, Some("Bearer wrong"), Some("s3cret")] {
        let mut request = tonic::Request::new(mlp(&[row(0)]));
        if let Some(t) = token {
            request
                .metadata_mut()
                .insert("authorization", t.parse().unwrap());
        }
        let err = c.model_infer(request).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}: {err}");
        let mut meta = tonic::Request::new(ServerMetadataRequest {});
        if let Some(t) = token {
            meta.metadata_mut()
                .insert("authorization", t.parse().unwrap());
        }
        assert_eq!(
            c.server_metadata(meta).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    let mut request = tonic::Request::new(mlp(&[row(0)]));
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let response = c.model_infer(request).await.unwrap();
    assert_eq!(cache_header(response.metadata()), "miss");
    server.stop().await;
}

#[tokio::test]
async fn streams_answer_each_request_in_order() {
    let dir = temp_dir();
    let (server, mut c) = start_with_client(dir.path()).await;
    let mut bad = mlp(&[row(9)]);
    bad.model_name = "nope".into();
    let requests = vec![mlp(&[row(5)]), bad, mlp(&[row(5), row(6)]), mlp(&[row(6)])];
    let answers: Vec<_> = c
        .model_stream_infer(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(answers.len(), 4);
    let status = |i: usize| match &answers[i].infer_response.as_ref().unwrap().parameters["x-cache"]
        .parameter_choice
    {
        Some(ParameterChoice::StringParam(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(status(0), "miss");
    assert!(
        answers[1].error_message.contains("no model"),
        "{:?}",
        answers[1]
    );
    assert_eq!(status(2), "miss");
    assert_eq!(status(3), "hit");
    let shape = &answers[2].infer_response.as_ref().unwrap().outputs[0].shape;
    assert_eq!(shape, &[2, 4]);
    server.stop().await;
}

#[tokio::test]
async fn unknown_rpcs_are_unimplemented_and_http_still_works() {
    let dir = temp_dir();
    let server = start(dir.path()).await;
    // A method of the protocol infercache does not serve (ModelConfig).
    let mut grpc = tonic::client::Grpc::new(channel(&server.base).await);
    grpc.ready().await.unwrap();
    let path = "/inference.GRPCInferenceService/ModelConfig"
        .parse()
        .unwrap();
    let err = grpc
        .unary::<ServerLiveRequest, ServerLiveRequest, _>(
            tonic::Request::new(ServerLiveRequest {}),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err}");
    let resp = server
        .client
        .get(server.url("/v2/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn grpc_over_a_unix_socket() {
    let dir = temp_dir();
    let sock = dir.path().join("infercache.sock");
    let listener = infercache::bind_unix(&sock).unwrap();
    let server = UnixServer::start(listener, &sock, dir.path().join("data"), |a| {
        a.models = vec![model("mlp", "mlp")];
    });
    let path = sock.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    let mut c = GrpcInferenceServiceClient::new(channel);
    let (header, _, response) = infer(&mut c, mlp(&[row(0)])).await;
    assert_eq!(header, "miss");
    assert_eq!(response.outputs[0].shape, [1, 4]);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn without_onnx_runtime_infer_is_unavailable() {
    let dir = temp_dir();
    let model = format!("--model=mlp={}", common::fixture("mlp").display());
    let server = ChildServer::spawn(
        dir.path(),
        &["--onnxruntime", "/nonexistent/libonnxruntime.so", &model],
    );
    let mut c = client(&server.base).await;
    let err = c.model_infer(mlp(&[row(0)])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("scripts/setup"), "{err}");
    assert!(!server_ready(&mut c).await);
}

/// A full queue, deterministically: one unit of VRAM budget, held by a
/// long minilm run, so mlp's batcher takes one row and waits for the
/// budget while its queue (one row) holds the next. Of four distinct
/// requests at least two are refused at once with RESOURCE_EXHAUSTED; the
/// others are answered when the run ends, and the server stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_resource_exhausted() {
    const VRAM: &str = "infercache_vram_units_in_use";
    let dir = temp_dir();
    let mlp_queue = infercache::config::ModelConfig {
        queue: 1,
        max_batch: 1,
        max_delay_ms: 0,
        ..model("mlp", "mlp")
    };
    let server = TestServer::start(dir.path(), |a| {
        a.models = vec![common::minilm(), mlp_queue];
        a.vram_units = Some(1);
    })
    .await;
    let (http, base) = (server.client.clone(), server.base.clone());
    let long: Vec<String> = (0..8)
        .map(|i| format!("text {i}: {}", "a sentence that goes on and on ".repeat(20)))
        .collect();
    let run = {
        let request = http
            .post(server.url("/v1/embeddings"))
            .json(&json!({"model": "minilm", "input": long}));
        tokio::spawn(async move { request.send().await.unwrap().status() })
    };
    let started = std::time::Instant::now();
    while metric(&http, &base, VRAM).await < 1.0 {
        assert!(
            !run.is_finished(),
            "the minilm run ended before it was seen"
        );
        assert!(
            started.elapsed().as_secs() < 30,
            "the minilm run never began"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let c = client(&server.base).await;
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        let (mut c, tx) = (c.clone(), tx.clone());
        tokio::spawn(async move {
            let answer = c.model_infer(mlp(&[row(900 + i)])).await;
            let _ = tx.send((i, answer.map(|r| cache_header(r.metadata()))));
        });
    }
    // The refusals come while the run still holds the budget: nothing
    // else can answer before it ends.
    let mut refused = Vec::new();
    for _ in 0..2 {
        let (i, answer) = answers.recv().await.unwrap();
        let err = answer.expect_err("only refusals can answer during the run");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        assert!(
            err.message().contains("queue is full; retry later"),
            "{err}"
        );
        refused.push(i);
    }
    assert!(
        !run.is_finished(),
        "the minilm run ended before the queue filled; make it longer"
    );
    assert_eq!(run.await.unwrap(), 200);
    drop(tx);
    while let Some((i, answer)) = answers.recv().await {
        match answer {
            Ok(cache) => assert_eq!(cache, "miss"),
            Err(e) if e.code() == Code::ResourceExhausted => refused.push(i),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused.len() <= 3, "the first row is always taken");
    // Healthy: live, ready, and a refused row is computed, then a hit.
    let mut c = c;
    assert!(server_live(&mut c).await);
    assert!(server_ready(&mut c).await);
    let again = mlp(&[row(900 + refused[0])]);
    assert_eq!(infer(&mut c, again.clone()).await.0, "miss");
    assert_eq!(infer(&mut c, again).await.0, "hit");
    let depth = metric(&http, &base, "infercache_queue_depth{model=\"mlp\"}").await;
    assert_eq!(depth, 0.0);
    server.stop().await;
}
