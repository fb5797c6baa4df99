//! Shared test harness: the real server on 127.0.0.1:0 with a temp data
//! dir, in-process (through `infercache::run`) or as a child process, and
//! a raw HTTP/1.1 client ([`raw_http`]) for what reqwest will not send, and
//! a real `redis-server` for the shared tier ([`redis`]).

#![allow(dead_code)] // each test binary uses a different part

pub mod raw_http;
pub mod redis;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use infercache::{Config, ServeArgs};
use tokio::{sync::oneshot, task::JoinHandle};

/// A server running inside the test's runtime.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<infercache::Result<()>>>,
}

impl TestServer {
    /// Start on `dir` with `tweak` applied to the flags.
    pub async fn start(dir: &Path, tweak: impl FnOnce(&mut ServeArgs)) -> TestServer {
        let mut args = ServeArgs {
            data_dir: Some(dir.to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        tweak(&mut args);
        let config = Config::from_args(&args).expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(infercache::run(listener, config, async {
            let _ = rx.await;
        }));
        TestServer {
            base,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, its body parsed as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        serde_json::from_slice(&resp.bytes().await.unwrap()).expect("a JSON body")
    }

    /// `host:port`, for raw connections.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Graceful stop; panics if the server failed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// A server running inside the test's runtime on a Unix socket `listener`
/// bound at `sock`, with its data in `data_dir` and `tweak` applied to the
/// flags.
pub struct UnixServer {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<infercache::Result<()>>,
}

impl UnixServer {
    pub fn start(
        listener: tokio::net::UnixListener,
        sock: &Path,
        data_dir: PathBuf,
        tweak: impl FnOnce(&mut ServeArgs),
    ) -> UnixServer {
        let mut args = ServeArgs {
            data_dir: Some(data_dir),
            listen: Some(format!("unix:{}", sock.display())),
            ..Default::default()
        };
        tweak(&mut args);
        let config = Config::from_args(&args).expect("valid test config");
        let (shutdown, stopped) = oneshot::channel();
        let task = tokio::spawn(infercache::run(listener, config, async {
            let _ = stopped.await;
        }));
        UnixServer { shutdown, task }
    }

    /// Graceful stop; panics if the server failed.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The real binary as a child process, for signals, crashes and its log.
pub struct ChildServer {
    pub base: String,
    pub child: Child,
    /// Every stderr line, once the process has closed it.
    log: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ChildServer {
    /// `infercache serve` on 127.0.0.1:0 with its data in `dir`, `extra`
    /// flags and `RUST_LOG=info`.
    pub fn spawn(dir: &Path, extra: &[&str]) -> ChildServer {
        ChildServer::start(ChildServer::command(dir, extra))
    }

    /// The command [`ChildServer::spawn`] runs, for a test to change its
    /// environment before [`ChildServer::start`].
    pub fn command(dir: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_infercache"));
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Start `command` and wait until it logs its address (in the text or
    /// the JSON log format).
    pub fn start(mut command: Command) -> ChildServer {
        let mut child = command.spawn().expect("start the infercache binary");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on ".len()..];
                    let end = rest.find(['"', ' ']).unwrap_or(rest.len());
                    let _ = tx.send(rest[..end].to_string());
                }
                lines.push(line);
            }
            lines
        });
        let base = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server printed its address");
        ChildServer {
            base,
            child,
            log: Some(log),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stop with SIGTERM, check that the exit is clean, and return every
    /// line the server wrote to stderr.
    pub fn stop_and_collect(mut self) -> Vec<String> {
        self.signal(libc::SIGTERM);
        assert!(self.wait().success(), "a clean exit on SIGTERM");
        self.log.take().unwrap().join().unwrap()
    }

    /// Send a signal to the process by its PID.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A committed fixture model, by file stem.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/models/{name}.onnx"))
}

/// `NAME=PATH` for `--model`, parsed as the flag would be.
pub fn model(name: &str, file: &str) -> infercache::config::ModelConfig {
    infercache::config::ModelConfig::new(name, fixture(file))
}

/// The minilm text model from `assets/` (with its tokenizer).
pub fn minilm() -> infercache::config::ModelConfig {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/minilm");
    infercache::config::ModelConfig {
        tokenizer: Some(assets.join("tokenizer.json")),
        ..infercache::config::ModelConfig::new("minilm", assets.join("model.onnx"))
    }
}

/// The KServe JSON request of the `mlp` fixture (x: FP32 [-1, 16]) over
/// `rows` of 16.
pub fn mlp_request(rows: &[Vec<f32>]) -> serde_json::Value {
    let data: Vec<f32> = rows.concat();
    serde_json::json!({"inputs": [{"name": "x", "shape": [rows.len(), 16], "datatype": "FP32", "data": data}]})
}

/// `rows` through `mlp` over REST JSON: (X-Cache, output `y` as f32 bit
/// patterns), after checking the status and the output's shape.
pub async fn infer_mlp(server: &TestServer, rows: &[Vec<f32>]) -> (String, Vec<u32>) {
    let resp = server
        .client
        .post(server.url("/v2/models/mlp/infer"))
        .json(&mlp_request(rows))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cache = resp.headers()["x-cache"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["outputs"][0]["shape"],
        serde_json::json!([rows.len(), 4])
    );
    let y = body["outputs"][0]["data"].as_array().unwrap();
    let bits = y.iter().map(|v| (v.as_f64().unwrap() as f32).to_bits());
    (cache, bits.collect())
}

/// The value of one Prometheus sample line, e.g.
/// `infercache_model_rows_total{model="mlp"}`; 0 when absent.
pub async fn metric(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = get_text(client, &format!("{base}/metrics")).await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// The body of `GET url`, as text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let resp = client.get(url).send().await.unwrap();
    resp.text().await.unwrap()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn redb_file(dir: &Path) -> PathBuf {
    dir.join("infercache.redb")
}

/// Percent-encode every byte, so any byte string is a valid path segment.
pub fn encode_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("%{b:02X}")).collect()
}
