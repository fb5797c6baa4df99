//! `/v1/embeddings` with the real all-MiniLM-L6-v2 (fetched by
//! scripts/setup): agreement with onnxruntime's reference vectors, meaning,
//! per-text caching, limits and errors in OpenAI's shape.

mod common;

use std::path::PathBuf;

use base64::Engine;
use common::{metric, temp_dir, TestServer};
use infercache::config::ModelConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

const ROWS: &str = "infercache_model_rows_total{model=\"minilm\"}";

fn asset(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/models/minilm")
        .join(file)
}

fn minilm() -> ModelConfig {
    ModelConfig {
        tokenizer: Some(asset("tokenizer.json")),
        threads: 2,
        ..ModelConfig::new("minilm", asset("model.onnx"))
    }
}

async fn start(dir: &std::path::Path) -> TestServer {
    TestServer::start(dir, |a| a.models = vec![minilm()]).await
}

async fn embed(server: &TestServer, body: Value) -> reqwest::Response {
    server
        .client
        .post(server.url("/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Vectors of a successful response, decoding either encoding.
async fn vectors(resp: reqwest::Response) -> (String, Vec<Vec<f32>>, Value) {
    assert_eq!(resp.status(), StatusCode::OK);
    let cache = resp.headers()["x-cache"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    let vs = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i);
            assert_eq!(d["object"], "embedding");
            match &d["embedding"] {
                Value::String(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                Value::Array(fs) => fs.iter().map(|f| f.as_f64().unwrap() as f32).collect(),
                other => panic!("unexpected embedding {other}"),
            }
        })
        .collect();
    (cache, vs, body)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn embeddings_match_onnxruntime_and_mean_something() {
    let reference: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/minilm_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let dir = temp_dir();
    let server = start(dir.path()).await;
    let texts: Vec<&str> = reference
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    let (cache, got, body) =
        vectors(embed(&server, json!({"model": "minilm", "input": texts})).await).await;
    assert_eq!(cache, "miss");
    let tokens: u64 = reference
        .iter()
        .map(|r| r["tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(body["usage"]["prompt_tokens"], tokens);
    assert_eq!(body["model"], "minilm");
    for (r, v) in reference.iter().zip(&got) {
        let want: Vec<f32> = r["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v.len(), 384);
        let c = cosine(v, &want);
        assert!(c >= 0.9999, "{:?}: cosine {c}", r["text"]);
    }
    // The long text was truncated at 256 tokens.
    assert_eq!(reference.last().unwrap()["tokens"], 256);
    assert!(cosine(&got[0], &got[1]) > 0.8);
    assert!(cosine(&got[0], &got[2]) < 0.3);
    // Cached vectors are the same bits, in either encoding.
    let (cache, again, _) = vectors(
        embed(
            &server,
            json!({"model": "minilm", "input": texts, "encoding_format": "base64"}),
        )
        .await,
    )
    .await;
    assert_eq!(cache, "hit");
    assert_eq!(again, got);
    server.stop().await;
}

#[tokio::test]
async fn repeats_are_computed_once_and_again_not_at_all() {
    let dir = temp_dir();
    let server = start(dir.path()).await;
    let input =
        json!({"model": "minilm", "input": ["alpha", "beta", "alpha", "gamma", "beta", "alpha"]});
    let (cache, first, _) = vectors(embed(&server, input.clone()).await).await;
    assert_eq!(cache, "miss");
    assert_eq!(first[0], first[2]);
    assert_eq!(metric(&server.client, &server.base, ROWS).await, 3.0);
    let (cache, _, _) = vectors(embed(&server, input).await).await;
    assert_eq!(cache, "hit");
    assert_eq!(metric(&server.client, &server.base, ROWS).await, 3.0);
    // A single string is a list of one.
    let (_, one, _) =
        vectors(embed(&server, json!({"model": "minilm", "input": "gamma"})).await).await;
    assert_eq!(one[0], first[3]);
    assert_eq!(metric(&server.client, &server.base, ROWS).await, 3.0);
    server.stop().await;
}

#[tokio::test]
async fn large_lists_and_bad_requests() {
    let dir = temp_dir();
    let server = start(dir.path()).await;
    let many: Vec<String> = (0..2048).map(|i| format!("sentence number {i}")).collect();
    let (_, vs, body) =
        vectors(embed(&server, json!({"model": "minilm", "input": many})).await).await;
    assert_eq!(vs.len(), 2048);
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 2048);
    let too_many: Vec<String> = (0..2049).map(|i| format!("s{i}")).collect();
    let cases = [
        (
            json!({"model": "minilm", "input": too_many}),
            StatusCode::BAD_REQUEST,
            "at most 2048",
        ),
        (
            json!({"model": "minilm", "input": []}),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            json!({"model": "minilm", "input": ["ok", ""]}),
            StatusCode::BAD_REQUEST,
            "input[1] is an empty string",
        ),
        (
            json!({"model": "minilm", "input": ["ok", 7]}),
            StatusCode::BAD_REQUEST,
            "input[1] must be a string",
        ),
        (
            json!({"model": "minilm", "input": [[1, 2]]}),
            StatusCode::BAD_REQUEST,
            "must be a string",
        ),
        (
            json!({"model": "minilm", "input": "x", "encoding_format": "hex"}),
            StatusCode::BAD_REQUEST,
            "encoding_format",
        ),
        (
            json!({"model": "minilm", "input": "x", "dimensions": 12}),
            StatusCode::BAD_REQUEST,
            "dimensions",
        ),
        (
            json!({"model": "nope", "input": "x"}),
            StatusCode::NOT_FOUND,
            "no model",
        ),
        (json!({"input": "x"}), StatusCode::BAD_REQUEST, "malformed"),
    ];
    for (body, status, needle) in cases {
        let resp = embed(&server, body).await;
        assert_eq!(resp.status(), status, "{needle}");
        let err: Value = resp.json().await.unwrap();
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle}: {message}");
        assert!(err["error"]["type"].is_string());
    }
    server.stop().await;
}
