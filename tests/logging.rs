//! The default log (no `RUST_LOG`) keeps ONNX Runtime's INFO chatter out
//! and the server's own INFO lines in.

mod common;

use common::{fixture, temp_dir, ChildServer};

#[tokio::test]
async fn the_default_log_shows_ort_only_from_warn() {
    let dir = temp_dir();
    let model = format!("mlp={}", fixture("mlp").display());
    let mut command = ChildServer::command(dir.path(), &["--model", &model]);
    command.env_remove("RUST_LOG");
    let server = ChildServer::start(command);
    // Models are loaded before the first request is answered.
    let ready = reqwest::get(server.url("/v2/models/mlp/ready")).await;
    assert_eq!(ready.unwrap().status(), 200);
    let lines = server.stop_and_collect();
    let ort_info: Vec<_> = lines
        .iter()
        .filter(|l| l.contains(" ort") && (l.contains(" INFO ") || l.contains(" DEBUG ")))
        .collect();
    assert!(
        ort_info.is_empty(),
        "{} ort INFO lines: {:?}",
        ort_info.len(),
        &ort_info[..ort_info.len().min(3)]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" INFO ") && l.contains("ONNX Runtime loaded")),
        "the server's own INFO lines are kept: {lines:?}"
    );
}
