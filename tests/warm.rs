//! `infercache warm FILE` against the real server: every kind of line, a
//! bad line counted as failed, hits reported, entries really stored.

mod common;

use common::{model, temp_dir, TestServer};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_replays_a_jsonl_file() {
    let dir = temp_dir();
    let server = TestServer::start(&dir.path().join("data"), |a| {
        a.models = vec![model("mlp", "mlp")]
    })
    .await;
    let infer = json!({"infer": {"model": "mlp", "request": {"inputs": [
        {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": vec![0.25f32; 16]}]}}});
    let mut lines: Vec<String> = (0..50)
        .map(|i| json!({"kv": {"key": format!("warm/{i}"), "value": format!("v{i}"), "content_type": "text/plain"}}).to_string())
        .collect();
    lines.push(infer.to_string());
    lines.push(String::new());
    lines.push("this is not json".into());
    let file = dir.path().join("warm.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n" + &infer.to_string() + "\n").unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_infercache"))
        .args(["warm", "--concurrency", "8", "--server", &server.base])
        .arg(&file)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success(),
        "one line failed, so the exit code says so"
    );
    assert!(stdout.starts_with("done 52, failed 1, hits "), "{stdout}");
    assert!(stderr.contains("not a warm request"), "{stderr}");
    let get = server
        .client
        .get(server.url("/v1/kv/warm%2F7"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.text().await.unwrap(), "v7");
    server.stop().await;
}
