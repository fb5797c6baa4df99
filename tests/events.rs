//! `GET /v1/events`: cache and model events as Server-Sent Events, and an
//! open stream does not hold up a graceful shutdown.

mod common;

use std::time::Duration;

use common::{model, temp_dir, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};

#[tokio::test]
async fn events_arrive_as_sse_and_shutdown_ends_the_stream() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| a.models = vec![model("mlp", "mlp")]).await;
    let resp = server
        .client
        .get(server.url("/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();

    let c = &server.client;
    assert_eq!(
        c.put(server.url("/v1/kv/k"))
            .body("hello")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let body = json!({"inputs": [{"name": "x", "shape": [2, 16], "datatype": "FP32", "data": (0..32).map(|i| i as f32).collect::<Vec<f32>>()}]});
    assert_eq!(
        c.post(server.url("/v2/models/mlp/infer"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.delete(server.url("/v1/kv/k"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let mut seen: Vec<Value> = Vec::new();
    let mut text = String::new();
    let wanted = ["stored", "model_run", "invalidated"];
    while !wanted.iter().all(|w| seen.iter().any(|e| e["type"] == *w)) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events within 10 s")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                seen.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    let stored = seen
        .iter()
        .find(|e| e["type"] == "stored" && e["namespace"] == 0)
        .unwrap();
    assert_eq!(stored["bytes"], 5);
    let run = seen.iter().find(|e| e["type"] == "model_run").unwrap();
    assert_eq!(
        (
            run["model"].clone(),
            run["batch_size"].clone(),
            run["ok"].clone()
        ),
        (json!("mlp"), json!(2), json!(true))
    );
    assert!(seen
        .iter()
        .any(|e| e["type"] == "invalidated" && e["namespace"] == 0 && e["count"] == 1));

    // The open stream must not keep the server from stopping.
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("graceful stop with a subscriber");
}
