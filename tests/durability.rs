//! Durability of the real binary: SIGKILL in the middle of 32 writers loses
//! no acknowledged PUT; SIGTERM flushes, closes redb and exits 0.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{temp_dir, ChildServer};
use reqwest::StatusCode;

fn value_for(client: usize, n: usize) -> Vec<u8> {
    // Distinct, length-varying bytes so a torn or swapped value shows.
    let len = 1 + (client * 7919 + n * 104_729) % 4096;
    (0..len).map(|i| (i ^ client ^ (n << 3)) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_put() {
    let dir = temp_dir();
    let server = ChildServer::spawn(dir.path(), &[]);
    let acked: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for client in 0..32 {
        let (acked, stop, base) = (acked.clone(), stop.clone(), server.base.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let url = format!("{base}/v1/kv/c{client}-{n}");
                match http.put(url).body(value_for(client, n)).send().await {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => {
                        acked.lock().unwrap().push((client, n))
                    }
                    Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {}
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    // Let writes flow, then kill mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut server = server;
    server.signal(libc::SIGKILL);
    server.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes were acknowledged",
        acked.len()
    );

    let server = ChildServer::spawn(dir.path(), &[]);
    let http = reqwest::Client::new();
    for (client, n) in &acked {
        let resp = http
            .get(server.url(&format!("/v1/kv/c{client}-{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "acknowledged c{client}-{n} is missing"
        );
        assert_eq!(
            &resp.bytes().await.unwrap()[..],
            &value_for(*client, *n)[..]
        );
    }
    drop(server);
    // The file passes redb's own integrity check.
    let mut db = redb::Database::open(common::redb_file(dir.path())).unwrap();
    assert!(db.check_integrity().unwrap());
}

#[tokio::test]
async fn sigterm_flushes_and_exits_zero() {
    let dir = temp_dir();
    let mut server = ChildServer::spawn(dir.path(), &[]);
    let http = reqwest::Client::new();
    for i in 0..20 {
        let resp = http
            .put(server.url(&format!("/v1/kv/t{i}")))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    server.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let mut db = redb::Database::open(common::redb_file(dir.path())).unwrap();
    assert!(db.check_integrity().unwrap());
    drop(db);
    let server = ChildServer::spawn(dir.path(), &[]);
    for i in 0..20 {
        let resp = http
            .get(server.url(&format!("/v1/kv/t{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), format!("v{i}"));
    }
}

#[test]
fn invalid_config_exits_nonzero_with_one_line() {
    let dir = temp_dir();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "memory_capacity = \"lots\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infercache"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("memory_capacity"), "{stderr}");
}

#[test]
fn a_corrupt_model_refuses_to_start_with_a_clear_message() {
    let dir = temp_dir();
    let model = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/models/mlp.onnx"
    ))
    .unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &model[..model.len() / 2]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infercache"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(format!("--model=broken={}", truncated.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("cannot load model") && stderr.contains("truncated.onnx"),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_onnx_runtime_models_answer_503_and_kv_works() {
    let dir = temp_dir();
    let model = format!(
        "--model=mlp={}/fixtures/models/mlp.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = ChildServer::spawn(
        dir.path(),
        &["--onnxruntime", "/nonexistent/libonnxruntime.so", &model],
    );
    let http = reqwest::Client::new();
    let resp = http.get(server.url("/v2/models/mlp")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = resp.text().await.unwrap();
    assert!(body.contains("scripts/setup"), "{body}");
    let ready = http
        .get(server.url("/v2/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let put = http
        .put(server.url("/v1/kv/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
}
