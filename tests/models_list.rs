//! OpenAI's `GET /v1/models`: only text models (with a tokenizer) are
//! listed, in OpenAI's shape, and an unknown one is a 404 in OpenAI's error
//! shape; the bearer token guards them like every other endpoint, and its
//! refusal is in OpenAI's shape too.

mod common;

use std::path::PathBuf;

use common::{model, temp_dir, TestServer};
use infercache::config::ModelConfig;
use serde_json::Value;

fn minilm() -> ModelConfig {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/minilm");
    ModelConfig {
        tokenizer: Some(dir.join("tokenizer.json")),
        ..ModelConfig::new("minilm", dir.join("model.onnx"))
    }
}

#[tokio::test]
async fn lists_text_models_in_openai_shape() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.models = vec![model("mlp", "mlp"), minilm()];
        a.auth_token = Some("t".into());
    })
    .await;
    let get = |path: &str| server.client.get(server.url(path)).bearer_auth("t").send();
    let list: Value = get("/v1/models").await.unwrap().json().await.unwrap();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "only the text model: {list}");
    assert_eq!(data[0]["id"], "minilm");
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["owned_by"], "infercache");
    assert!(data[0]["created"].as_u64().unwrap() > 1_600_000_000);
    let one = get("/v1/models/minilm").await.unwrap();
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["id"], "minilm");
    for missing in ["/v1/models/mlp", "/v1/models/nope"] {
        let resp = get(missing).await.unwrap();
        assert_eq!(resp.status(), 404, "{missing}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "not_found_error", "{body}");
    }
    // Without the token: refused in OpenAI's shape, on every OpenAI route.
    let anonymous = [
        server.client.get(server.url("/v1/models")),
        server
            .client
            .post(server.url("/v1/embeddings"))
            .json(&serde_json::json!({"model": "minilm", "input": "hi"})),
    ];
    for request in anonymous {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    }
    server.stop().await;
}
