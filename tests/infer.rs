//! KServe v2 inference against the real server with real ONNX models:
//! bit-identical results, per-row caching, coalescing, batching, the VRAM
//! budget, and every kind of bad input.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::{infer_mlp, metric, mlp_request, model, temp_dir, TestServer};
use infercache::testing::{
    backend::{self, Backend, BackendOptions},
    tensor::{DataType, Tensor},
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ROWS: &str = "infercache_model_rows_total{model=\"mlp\"}";
const RUNS: &str = "infercache_model_runs_total{model=\"mlp\"}";

fn row(seed: u32) -> Vec<f32> {
    (0..16)
        .map(|i| ((seed * 16 + i) as f32 * 0.37).sin())
        .collect()
}

async fn post(server: &TestServer, model: &str, body: &Value) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/v2/models/{model}/infer")))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn direct_mlp(rows: &[Vec<f32>]) -> Vec<u32> {
    backend::init_runtime(&backend::resolve_library(None)).unwrap();
    let b = Backend::open(
        &common::fixture("mlp"),
        &BackendOptions {
            intra_threads: 1,
            instances: 1,
            nice: 0,
        },
    )
    .unwrap();
    let x = Tensor {
        name: "x".into(),
        datatype: DataType::Fp32,
        shape: vec![rows.len() as u64, 16],
        data: Bytes::from(
            rows.concat()
                .iter()
                .flat_map(|f| f.to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
    };
    let y = b.run(&[x]).unwrap().remove(0);
    y.data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

async fn start(dir: &Path, models: Vec<infercache::config::ModelConfig>) -> TestServer {
    TestServer::start(dir, |a| a.models = models).await
}

#[tokio::test]
async fn results_are_bit_identical_to_a_direct_run_and_cached_ones_too() {
    let dir = temp_dir();
    let server = start(dir.path(), vec![model("mlp", "mlp")]).await;
    let rows: Vec<Vec<f32>> = (0..3).map(row).collect();
    let direct = direct_mlp(&rows);
    let (first, fresh) = infer_mlp(&server, &rows).await;
    assert_eq!(first, "miss");
    assert_eq!(fresh, direct, "server vs direct ort run");
    let (second, cached) = infer_mlp(&server, &rows).await;
    assert_eq!(second, "hit");
    assert_eq!(cached, fresh, "cached vs fresh");
    // The binary encoding of the same tensor hits the same entries.
    let header = json!({"inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP32",
        "parameters": {"binary_data_size": 192}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(rows.concat().iter().flat_map(|f| f.to_le_bytes()));
    let resp = server
        .client
        .post(server.url("/v2/models/mlp/versions/1/infer"))
        .header("inference-header-content-length", header.len())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-cache"], "hit");
    let json_len: usize = resp.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = resp.bytes().await.unwrap();
    let bits: Vec<u32> = bytes[json_len..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(bits, direct);
    server.stop().await;
}

#[tokio::test]
async fn only_unseen_rows_are_computed() {
    let dir = temp_dir();
    let server = start(dir.path(), vec![model("mlp", "mlp")]).await;
    let seen: Vec<Vec<f32>> = (0..6).map(row).collect();
    infer_mlp(&server, &seen).await;
    let before = metric(&server.client, &server.base, ROWS).await;
    assert_eq!(before, 6.0);
    // 8 rows: the 6 seen, 2 new (one of them twice, then once more).
    let mut batch = seen.clone();
    batch.extend([row(100), row(101)]);
    let (status, _) = infer_mlp(&server, &batch).await;
    assert_eq!(status, "miss");
    assert_eq!(
        metric(&server.client, &server.base, ROWS).await - before,
        2.0
    );
    let dupes = vec![row(200), row(200), row(201), row(200)];
    infer_mlp(&server, &dupes).await;
    assert_eq!(
        metric(&server.client, &server.base, ROWS).await - before,
        4.0,
        "identical rows run once"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_run_one_row_and_bursts_batch() {
    let dir = temp_dir();
    let mlp = infercache::config::ModelConfig {
        max_batch: 32,
        max_delay_ms: 50,
        ..model("mlp", "mlp")
    };
    let server = start(dir.path(), vec![mlp]).await;
    let same = mlp_request(&[row(7)]);
    let calls = (0..200).map(|_| post(&server, "mlp", &same));
    let statuses: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| {
            assert_eq!(r.status(), StatusCode::OK);
            r.headers()["x-cache"].to_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(metric(&server.client, &server.base, ROWS).await, 1.0);
    assert_eq!(statuses.iter().filter(|s| *s == "miss").count(), 1);

    let runs_before = metric(&server.client, &server.base, RUNS).await;
    let bodies: Vec<Value> = (1000..1064).map(|i| mlp_request(&[row(i)])).collect();
    let burst = bodies.iter().map(|b| post(&server, "mlp", b));
    for r in futures::future::join_all(burst).await {
        assert_eq!(r.status(), StatusCode::OK);
    }
    let runs = metric(&server.client, &server.base, RUNS).await - runs_before;
    assert_eq!(metric(&server.client, &server.base, ROWS).await, 65.0);
    assert!(runs <= 6.0, "64 rows took {runs} runs");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_unit_budget_never_runs_two_models_at_once() {
    let dir = temp_dir();
    let models = vec![
        infercache::config::ModelConfig {
            max_delay_ms: 0,
            ..model("a", "mlp")
        },
        infercache::config::ModelConfig {
            max_delay_ms: 0,
            ..model("b", "mlp")
        },
    ];
    let server = TestServer::start(dir.path(), |a| {
        a.models = models;
        a.vram_units = Some(1);
    })
    .await;
    let bodies: Vec<(String, Value)> = (0..60)
        .map(|i| {
            (
                if i % 2 == 0 { "a" } else { "b" }.to_string(),
                mlp_request(&[row(5000 + i)]),
            )
        })
        .collect();
    let calls = bodies.iter().map(|(m, b)| post(&server, m, b));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status(), StatusCode::OK);
    }
    let stats = server.get_json("/v1/stats").await;
    assert_eq!(stats["vram_units_peak"], 1, "{stats}");
    let runs = metric(
        &server.client,
        &server.base,
        "infercache_model_runs_total{model=\"a\"}",
    )
    .await
        + metric(
            &server.client,
            &server.base,
            "infercache_model_runs_total{model=\"b\"}",
        )
        .await;
    assert!(runs >= 2.0);
    server.stop().await;
}

#[tokio::test]
async fn every_fixture_model_matches_onnxruntime() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("expected").with_extension("json")).unwrap(),
    )
    .unwrap();
    let dir = temp_dir();
    let names = ["mlp", "two_io", "dtypes", "fixed", "heavy"];
    let server = start(dir.path(), names.iter().map(|n| model(n, n)).collect()).await;
    for name in names {
        let case = &expected[name];
        let body = json!({"inputs": case["inputs"]});
        for round in ["miss", "hit"] {
            let resp = post(&server, name, &body).await;
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            assert_eq!(resp.headers()["x-cache"], round, "{name}");
            let got: Value = resp.json().await.unwrap();
            for want in case["outputs"].as_array().unwrap() {
                let out = got["outputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["name"] == want["name"])
                    .unwrap();
                assert_eq!(out["shape"], want["shape"], "{name}");
                assert_eq!(out["datatype"], want["datatype"], "{name}");
                for (g, w) in out["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(want["data"].as_array().unwrap())
                {
                    match (g.as_f64(), w.as_f64()) {
                        (Some(g), Some(w)) => assert!(
                            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                            "{name}: {g} vs {w}"
                        ),
                        _ => assert_eq!(g, w, "{name}"),
                    }
                }
            }
        }
    }
    // A requested subset of outputs comes from the same entry.
    let body = json!({"inputs": expected["two_io"]["inputs"], "outputs": [{"name": "count"}]});
    let resp = post(&server, "two_io", &body).await;
    assert_eq!(resp.headers()["x-cache"], "hit");
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(got["outputs"][0]["name"], "count");
    // Metadata as tritonclient reads it.
    let meta = server.get_json("/v2/models/mlp").await;
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "x", "datatype": "FP32", "shape": [-1, 16]})
    );
    let fixed = server.get_json("/v2/models/fixed").await;
    assert_eq!(fixed["inputs"][0]["shape"], json!([2, 8]));
    server.stop().await;
}

#[tokio::test]
async fn bad_inference_requests_get_clear_errors() {
    let dir = temp_dir();
    let server = start(
        dir.path(),
        vec![model("mlp", "mlp"), model("fixed", "fixed")],
    )
    .await;
    let x = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]});
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "nope",
            x(json!([1, 16]), "FP32", json!(row(1))),
            StatusCode::NOT_FOUND,
            "no model",
        ),
        (
            "mlp",
            x(json!([1, 15]), "FP32", json!(vec![0.0; 15])),
            StatusCode::BAD_REQUEST,
            "shape",
        ),
        (
            "mlp",
            x(json!([16]), "FP32", json!(vec![0.0; 16])),
            StatusCode::BAD_REQUEST,
            "shape",
        ),
        (
            "mlp",
            x(json!([1, 16]), "INT64", json!(vec![0; 16])),
            StatusCode::BAD_REQUEST,
            "must be FP32",
        ),
        (
            "mlp",
            x(json!([1, 16]), "FP32", json!(vec![0.0; 15])),
            StatusCode::BAD_REQUEST,
            "elements",
        ),
        (
            "mlp",
            x(json!([0, 16]), "FP32", json!([])),
            StatusCode::BAD_REQUEST,
            "at least 1",
        ),
        (
            "mlp",
            json!({"inputs": [{"name": "z", "shape": [1, 16], "datatype": "FP32", "data": row(1)}]}),
            StatusCode::BAD_REQUEST,
            "no input `z`",
        ),
        (
            "mlp",
            json!({"inputs": []}),
            StatusCode::BAD_REQUEST,
            "missing",
        ),
        (
            "mlp",
            x(json!([1, 16]), "FP32", json!(row(1)))
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .chain([("outputs".to_string(), json!([{"name": "nope"}]))])
                .collect(),
            StatusCode::BAD_REQUEST,
            "no output",
        ),
        (
            "mlp",
            x(json!([4294967296u64, 4294967296u64]), "FP32", json!([])),
            StatusCode::BAD_REQUEST,
            "max_request_size",
        ),
        (
            "fixed",
            x(json!([3, 8]), "FP32", json!(vec![0.0; 24])),
            StatusCode::BAD_REQUEST,
            "shape",
        ),
    ];
    for (model, body, status, needle) in cases {
        let resp = post(&server, model, &body).await;
        assert_eq!(resp.status(), status, "{needle}");
        let err: Value = resp.json().await.unwrap();
        assert!(
            err["error"].as_str().unwrap().contains(needle),
            "{needle}: {err}"
        );
    }
    let raw = |body: &'static [u8], header: Option<usize>| {
        let mut req = server
            .client
            .post(server.url("/v2/models/mlp/infer"))
            .body(body);
        if let Some(h) = header {
            req = req.header("inference-header-content-length", h);
        }
        req.send()
    };
    for (body, header) in [(&b"{\"inputs\": [ oops"[..], None), (&b"{}"[..], Some(1000)), (&b"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,16],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":64}}]}abc"[..], Some(91))] {
        let resp = raw(body, header).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"].is_string());
    }
    let version = server
        .client
        .get(server.url("/v2/models/mlp/versions/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), StatusCode::NOT_FOUND);
    // Still up, and still computing.
    let (_, y) = infer_mlp(&server, &[row(1)]).await;
    assert_eq!(y.len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn cache_control_no_store_and_no_cache() {
    let dir = temp_dir();
    let server = start(dir.path(), vec![model("mlp", "mlp")]).await;
    let body = mlp_request(&[row(9)]);
    let send = |cc: &'static str| {
        server
            .client
            .post(server.url("/v2/models/mlp/infer"))
            .header("cache-control", cc)
            .json(&body)
            .send()
    };
    assert_eq!(send("no-store").await.unwrap().headers()["x-cache"], "miss");
    assert_eq!(
        send("no-store").await.unwrap().headers()["x-cache"],
        "miss",
        "nothing was stored"
    );
    assert_eq!(
        post(&server, "mlp", &body).await.headers()["x-cache"],
        "miss"
    );
    assert_eq!(
        post(&server, "mlp", &body).await.headers()["x-cache"],
        "hit"
    );
    assert_eq!(
        send("no-cache").await.unwrap().headers()["x-cache"],
        "miss",
        "recomputed"
    );
    assert_eq!(metric(&server.client, &server.base, ROWS).await, 4.0);
    server.stop().await;
}

#[tokio::test]
async fn a_models_cache_can_be_dropped_alone() {
    let dir = temp_dir();
    let server = start(
        dir.path(),
        vec![model("mlp", "mlp"), model("two_io", "two_io")],
    )
    .await;
    infer_mlp(&server, &(0..5).map(row).collect::<Vec<_>>()).await;
    let kv = server
        .client
        .put(server.url("/v1/kv/keep"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(kv.status(), StatusCode::NO_CONTENT);
    let resp = server
        .client
        .delete(server.url("/v1/models/mlp/cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"model": "mlp", "deleted": 5}));
    let (status, _) = infer_mlp(&server, &[row(0)]).await;
    assert_eq!(status, "miss", "dropped from memory too");
    let kept = server
        .client
        .get(server.url("/v1/kv/keep"))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
    let unknown = server
        .client
        .delete(server.url("/v1/models/nope/cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_row_fails_alone_and_is_not_cached() {
    let dir = temp_dir();
    // `lookup` gathers from a 4-row table: index 9 makes the run fail.
    let lookup = infercache::config::ModelConfig {
        max_delay_ms: 200,
        ..model("lookup", "lookup")
    };
    let server = start(dir.path(), vec![lookup]).await;
    let idx = |i: i64| json!({"inputs": [{"name": "idx", "shape": [1], "datatype": "INT64", "data": [i]}]});
    let (good, bad) = (idx(1), idx(9));
    // Both rows land in one batch; only the bad one fails.
    let (good_resp, bad_resp) = tokio::join!(
        post(&server, "lookup", &good),
        post(&server, "lookup", &bad)
    );
    assert_eq!(good_resp.status(), StatusCode::OK);
    let y: Value = good_resp.json().await.unwrap();
    assert_eq!(y["outputs"][0]["data"], json!([2.0, 3.0]));
    assert_eq!(bad_resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let err: Value = bad_resp.json().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("computation failed"),
        "{err}"
    );
    // The failure was not cached: the next request runs the model again.
    let rows = "infercache_model_rows_total{model=\"lookup\"}";
    let before = metric(&server.client, &server.base, rows).await;
    assert_eq!(
        post(&server, "lookup", &bad).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        metric(&server.client, &server.base, rows).await,
        before + 1.0
    );
    assert_eq!(
        post(&server, "lookup", &good).await.headers()["x-cache"],
        "hit"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_body_over_max_request_size_is_413_naming_it() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.models = vec![model("mlp", "mlp")];
        a.max_request_size = Some(bytesize::ByteSize::kib(1));
    })
    .await;
    let rows = vec![vec![0.5f32; 16]; 64];
    let resp = post(&server, "mlp", &mlp_request(&rows)).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let message = resp.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("max_request_size") && !message.contains("max_value_size"),
        "{message}"
    );
    server.stop().await;
}
