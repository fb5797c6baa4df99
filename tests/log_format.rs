//! `--log-format json`: every line the binary writes is one JSON object,
//! and each request is logged with its method, path, status, cache status
//! and latency. The default stays human-readable.

mod common;

use common::{fixture, temp_dir, ChildServer};
use infercache::grpc::proto::{
    grpc_inference_service_client::GrpcInferenceServiceClient, ModelInferRequest,
};
use serde_json::Value;

/// Run the binary with `extra`, make a few requests, stop it with SIGTERM
/// and return its stderr lines.
fn run_and_collect(extra: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let dir = temp_dir();
    let model = format!("--model=mlp={}", fixture("mlp").display());
    let mut command = ChildServer::command(dir.path(), &[&model]);
    command.args(extra).envs(env.iter().copied());
    let server = ChildServer::start(command);
    let base = server.base.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let body = serde_json::json!({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": vec![0.5f32; 16]}]});
        for _ in 0..2 {
            let resp = http
                .post(format!("{base}/v2/models/mlp/infer"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        let resp = http.get(format!("{base}/nope")).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let channel = tonic::transport::Endpoint::from_shared(base.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = GrpcInferenceServiceClient::new(channel);
        let request = ModelInferRequest {
            model_name: "nope".into(),
            ..Default::default()
        };
        let err = grpc.model_infer(request).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    });
    server.stop_and_collect()
}

#[test]
fn json_logs_are_one_object_per_line_with_request_fields() {
    let lines = run_and_collect(&["--log-format", "json"], &[]);
    let objects: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = objects
        .iter()
        .filter(|o| o["target"] == "infercache::request")
        .collect();
    assert_eq!(requests.len(), 4, "{lines:#?}");
    let fields = |i: usize| &requests[i]["fields"];
    assert_eq!(requests[0]["level"], "INFO");
    assert_eq!(fields(0)["method"], "POST");
    assert_eq!(fields(0)["path"], "/v2/models/mlp/infer");
    assert_eq!(fields(0)["status"], 200);
    assert_eq!(fields(0)["cache"], "miss");
    assert_eq!(fields(1)["cache"], "hit");
    assert!(fields(1)["latency_us"].is_u64());
    assert_eq!(
        (fields(2)["status"].as_u64(), fields(2)["cache"].as_str()),
        (Some(404), Some("-"))
    );
    assert_eq!(
        fields(3)["path"],
        "/inference.GRPCInferenceService/ModelInfer"
    );
    assert_eq!(fields(3)["grpc_status"], "5");
}

#[test]
fn the_environment_selects_json_and_text_is_the_default() {
    let lines = run_and_collect(&[], &[("INFERCACHE_LOG_FORMAT", "json")]);
    assert!(lines
        .iter()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    let lines = run_and_collect(&[], &[]);
    assert!(lines.iter().any(|l| l.contains("request")
        && l.contains("/v2/models/mlp/infer")
        && l.contains("status=200")));
    assert!(lines
        .iter()
        .all(|l| serde_json::from_str::<Value>(l).is_err()));
}
