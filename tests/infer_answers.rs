//! The KServe REST answer cache against the real server with the real
//! `mlp` model: an answer kept after an all-hit request answers the same
//! bytes, headers and counters as the rows did; a model cache drop, a
//! `no-cache` or `no-store`, a different binary tail and the rows' expiry
//! all reach the rows again.

mod common;

use std::{path::Path, time::Duration};

use common::{metric, mlp_request, model, temp_dir, TestServer};
use infercache::config::ModelConfig;
use reqwest::{header::HeaderMap, StatusCode};
use serde_json::{json, Value};

const MEMORY_HITS: &str = "infercache_cache_hits_total{tier=\"memory\"}";
const DISK_HITS: &str = "infercache_cache_hits_total{tier=\"disk\"}";
const MISSES: &str = "infercache_cache_misses_total";
const COALESCED: &str = "infercache_coalesced_total";
const ROWS: &str = "infercache_model_rows_total{model=\"mlp\"}";

fn row(seed: u32) -> Vec<f32> {
    (0..16)
        .map(|i| ((seed * 16 + i) as f32 * 0.53).cos())
        .collect()
}

async fn start(dir: &Path, mlp: ModelConfig) -> TestServer {
    TestServer::start(dir, |a| a.models = vec![mlp]).await
}

/// One infer answer: status, headers, body bytes.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn x_cache(&self) -> &str {
        self.headers["x-cache"].to_str().unwrap()
    }

    /// The headers a client reads (everything but the date).
    fn visible_headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<_> = self
            .headers
            .iter()
            .filter(|(name, _)| *name != "date")
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        h.sort();
        h
    }
}

/// `POST /v2/models/mlp/infer` with `body` and extra `headers`.
async fn infer(server: &TestServer, body: &[u8], headers: &[(&str, String)]) -> Answer {
    let mut request = server
        .client
        .post(server.url("/v2/models/mlp/infer"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let resp = request.send().await.unwrap();
    Answer {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.unwrap(),
    }
}

fn json_body(rows: &[Vec<f32>]) -> Vec<u8> {
    serde_json::to_vec(&mlp_request(rows)).unwrap()
}

/// Entries in the memory tier (rows and answers).
async fn memory_entries(server: &TestServer) -> u64 {
    server.get_json("/v1/stats").await["memory"]["entries"]
        .as_u64()
        .unwrap()
}

/// The read path's counters, in one snapshot.
async fn counters(server: &TestServer) -> [f64; 5] {
    let (c, b) = (&server.client, &server.base);
    [
        metric(c, b, MEMORY_HITS).await,
        metric(c, b, DISK_HITS).await,
        metric(c, b, MISSES).await,
        metric(c, b, COALESCED).await,
        metric(c, b, ROWS).await,
    ]
}

fn delta(before: [f64; 5], after: [f64; 5]) -> [f64; 5] {
    std::array::from_fn(|i| after[i] - before[i])
}

#[tokio::test]
async fn an_answer_hit_is_the_row_hit_byte_for_byte_and_counts_the_same() {
    let dir = temp_dir();
    let server = start(dir.path(), model("mlp", "mlp")).await;
    // Three rows, two distinct: a full hit counts two memory hits.
    let body = json_body(&[row(1), row(2), row(1)]);
    let first = infer(&server, &body, &[]).await;
    assert_eq!((first.status, first.x_cache()), (StatusCode::OK, "miss"));
    let entries = memory_entries(&server).await;
    assert_eq!(entries, 2, "the two distinct rows");

    let before = counters(&server).await;
    let rows_hit = infer(&server, &body, &[]).await;
    let row_counts = delta(before, counters(&server).await);
    assert_eq!(rows_hit.x_cache(), "hit");
    assert_eq!(row_counts, [2.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        memory_entries(&server).await,
        entries + 1,
        "an all-hit answer is kept, in memory"
    );

    let before = counters(&server).await;
    let answer_hit = infer(&server, &body, &[]).await;
    assert_eq!(
        delta(before, counters(&server).await),
        row_counts,
        "counted as the rows were"
    );
    assert_eq!(answer_hit.body, first.body, "byte-identical");
    assert_eq!(answer_hit.body, rows_hit.body);
    assert_eq!(answer_hit.visible_headers(), rows_hit.visible_headers());
    assert_eq!(answer_hit.x_cache(), "hit");
    assert_eq!(answer_hit.headers["content-type"], "application/json");
    assert_eq!(memory_entries(&server).await, entries + 1);

    // The answer is the body's: the same rows sent differently (an id the
    // answer echoes) are another answer, with the same rows behind it.
    let mut with_id: Value = serde_json::from_slice(&body).unwrap();
    with_id["id"] = json!("req-7");
    let with_id = serde_json::to_vec(&with_id).unwrap();
    let echoed = infer(&server, &with_id, &[]).await;
    assert_eq!(echoed.x_cache(), "hit");
    let echoed_json: Value = serde_json::from_slice(&echoed.body).unwrap();
    assert_eq!(echoed_json["id"], "req-7");
    assert_eq!(memory_entries(&server).await, entries + 2);
    let again = infer(&server, &with_id, &[]).await;
    assert_eq!(again.body, echoed.body);
    server.stop().await;
}

#[tokio::test]
async fn a_model_cache_drop_clears_its_answers() {
    let dir = temp_dir();
    let server = start(dir.path(), model("mlp", "mlp")).await;
    let body = json_body(&[row(3)]);
    let first = infer(&server, &body, &[]).await;
    assert_eq!(first.x_cache(), "miss");
    assert_eq!(infer(&server, &body, &[]).await.x_cache(), "hit");
    assert_eq!(memory_entries(&server).await, 2, "the row and its answer");
    let dropped = server
        .client
        .delete(server.url("/v1/models/mlp/cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::OK);
    let dropped: Value = dropped.json().await.unwrap();
    assert_eq!(
        dropped["deleted"], 1,
        "the row on disk; answers are never there"
    );
    let after = infer(&server, &body, &[]).await;
    assert_eq!(after.x_cache(), "miss", "computed again, not answered");
    assert_eq!(after.body, first.body);
    assert_eq!(metric(&server.client, &server.base, ROWS).await, 2.0);
    server.stop().await;
}

#[tokio::test]
async fn no_store_keeps_no_answer_and_no_cache_bypasses_it() {
    let dir = temp_dir();
    let server = start(dir.path(), model("mlp", "mlp")).await;
    let body = json_body(&[row(4)]);
    let no_store = [("cache-control", "no-store".to_string())];
    let no_cache = [("cache-control", "no-cache".to_string())];
    assert_eq!(infer(&server, &body, &[]).await.x_cache(), "miss");
    assert_eq!(infer(&server, &body, &no_store).await.x_cache(), "hit");
    assert_eq!(
        memory_entries(&server).await,
        1,
        "no answer kept for no-store"
    );
    assert_eq!(infer(&server, &body, &[]).await.x_cache(), "hit");
    assert_eq!(memory_entries(&server).await, 2, "now kept");
    let before = counters(&server).await;
    let bypass = infer(&server, &body, &no_cache).await;
    assert_eq!(bypass.x_cache(), "miss", "recomputed, not answered");
    assert_eq!(
        delta(before, counters(&server).await),
        [0.0, 0.0, 1.0, 0.0, 1.0]
    );
    server.stop().await;
}

/// A binary-input request: the JSON header, then the row's bytes.
fn binary_request(x: &[f32], binary_output: bool) -> (Vec<u8>, usize) {
    let header = json!({
        "parameters": {"binary_data_output": binary_output},
        "inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                    "parameters": {"binary_data_size": 64}}],
    });
    let mut body = serde_json::to_vec(&header).unwrap();
    let header_len = body.len();
    body.extend(x.iter().flat_map(|f| f.to_le_bytes()));
    (body, header_len)
}

#[tokio::test]
async fn binary_requests_are_answered_by_their_whole_body() {
    let dir = temp_dir();
    let server = start(dir.path(), model("mlp", "mlp")).await;
    let (a, len) = binary_request(&row(5), true);
    let (b, len_b) = binary_request(&row(6), true);
    assert_eq!(len, len_b, "the same JSON header");
    assert_eq!(a[..len], b[..len]);
    let hl = [("inference-header-content-length", len.to_string())];
    let first = infer(&server, &a, &hl).await;
    assert_eq!((first.status, first.x_cache()), (StatusCode::OK, "miss"));
    let rows_hit = infer(&server, &a, &hl).await;
    let answer_hit = infer(&server, &a, &hl).await;
    assert_eq!(answer_hit.body, first.body);
    assert_eq!(answer_hit.visible_headers(), rows_hit.visible_headers());
    assert_eq!(
        answer_hit.headers["content-type"],
        "application/octet-stream"
    );
    let out_len: usize = answer_hit.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(answer_hit.body.len(), out_len + 16, "JSON, then 4 FP32");

    // Same header, another tail: its own answer, computed.
    let other = infer(&server, &b, &hl).await;
    assert_eq!(other.x_cache(), "miss");
    assert_ne!(other.body, answer_hit.body);
    // And the same row as JSON in, binary out agrees with it.
    let (b_json_out, len_json) = binary_request(&row(6), false);
    let json_out = infer(
        &server,
        &b_json_out,
        &[("inference-header-content-length", len_json.to_string())],
    )
    .await;
    assert_eq!(json_out.x_cache(), "hit", "the row is shared");
    assert_eq!(json_out.headers["content-type"], "application/json");
    server.stop().await;
}

#[tokio::test]
async fn an_answer_expires_with_its_rows() {
    let dir = temp_dir();
    let mlp = ModelConfig {
        ttl: Some(Duration::from_secs(1)),
        ..model("mlp", "mlp")
    };
    let server = start(dir.path(), mlp).await;
    let body = json_body(&[row(7)]);
    assert_eq!(infer(&server, &body, &[]).await.x_cache(), "miss");
    assert_eq!(infer(&server, &body, &[]).await.x_cache(), "hit");
    assert_eq!(infer(&server, &body, &[]).await.x_cache(), "hit");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        infer(&server, &body, &[]).await.x_cache(),
        "miss",
        "neither the row nor its answer outlives the row's ttl"
    );
    server.stop().await;
}
