//! The default log (no `RUST_LOG`) keeps ONNX Runtime's INFO chatter out
//! and the server's own INFO lines in.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{fixture, temp_dir};

#[tokio::test]
async fn the_default_log_shows_ort_only_from_warn() {
    let dir = temp_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_infercache"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--model")
        .arg(format!("mlp={}", fixture("mlp").display()))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the infercache binary");
    let stderr = child.stderr.take().unwrap();
    let (address, addressed) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let _ = address.send(line[at + "listening on ".len()..].trim().to_string());
            }
            lines.push(line);
        }
        lines
    });
    let base = addressed
        .recv_timeout(Duration::from_secs(20))
        .expect("the server printed its address");
    // Models are loaded before the first request is answered.
    let ready = reqwest::get(format!("{base}/v2/models/mlp/ready")).await;
    assert_eq!(ready.unwrap().status(), 200);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());
    let lines = reader.join().unwrap();
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
