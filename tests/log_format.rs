//! `--log-format json`: every line the binary writes is one JSON object,
//! and each request is logged with its method, path, status, cache status
//! and latency. The default stays human-readable.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{fixture, temp_dir};
use infercache::grpc::proto::{
    grpc_inference_service_client::GrpcInferenceServiceClient, ModelInferRequest,
};
use serde_json::Value;

/// Run the binary with `extra`, make a few requests, stop it with SIGTERM
/// and return its stderr lines.
fn run_and_collect(extra: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let dir = temp_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_infercache"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg(format!("--model=mlp={}", fixture("mlp").display()))
        .args(extra)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on http://".len()..];
                let addr: String = rest
                    .chars()
                    .take_while(|c| !matches!(c, '"' | ' '))
                    .collect();
                let _ = tx.send(addr);
            }
            lines.push(line);
        }
        lines
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server started");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let body = serde_json::json!({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": vec![0.5f32; 16]}]});
        for _ in 0..2 {
            let resp = http
                .post(format!("http://{addr}/v2/models/mlp/infer"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        let resp = http.get(format!("http://{addr}/nope")).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
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
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap()
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
