//! `infercache warm FILE` against the real server: every kind of line, a
//! bad line counted as failed, hits reported, entries really stored.

mod common;

use common::{model, temp_dir, TestServer, UnixServer};
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

/// Over a Unix socket, from a pipe: each line is sent as soon as it is
/// written (the file is streamed, not read whole first), and model names
/// are escaped in the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_streams_a_pipe_to_a_unix_socket() {
    use std::{io::Write, os::unix::ffi::OsStrExt, time::Duration};
    let dir = temp_dir();
    let sock = dir.path().join("infercache.sock");
    let listener = infercache::bind_unix(&sock).unwrap();
    let server = UnixServer::start(listener, &sock, dir.path().join("data"), |_| {});
    let fifo = dir.path().join("warm.fifo");
    let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);

    let warm = tokio::process::Command::new(env!("CARGO_BIN_EXE_infercache"))
        .args(["warm", "--server", &format!("unix:{}", sock.display())])
        .arg(&fifo)
        .output();
    let warm = tokio::spawn(warm);
    let mut pipe = tokio::task::spawn_blocking(move || std::fs::File::create(fifo).unwrap())
        .await
        .unwrap();
    let kv = json!({"kv": {"key": "streamed", "value": "yes"}});
    writeln!(pipe, "{kv}").unwrap();
    let client = reqwest::Client::builder()
        .unix_socket(sock.as_path())
        .build()
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let get = client.get("http://localhost/v1/kv/streamed").send().await;
            if get.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "the first line was not sent while the pipe stayed open"
    );
    let infer = json!({"infer": {"model": "mlp?x", "request": {"inputs": []}}});
    writeln!(pipe, "{infer}").unwrap();
    drop(pipe);
    let out = warm.await.unwrap().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.starts_with("done 1, failed 1, "), "{stdout}");
    assert!(stderr.contains("no model named `mlp?x`"), "{stderr}");
    server.stop().await;
}
