//! Live configuration: SIGHUP re-reads the file; limits and the auth token
//! change without a restart or a dropped request; an invalid file keeps the
//! old configuration.

mod common;

use std::time::Duration;

use common::{temp_dir, ChildServer};
use reqwest::StatusCode;

async fn put(http: &reqwest::Client, server: &ChildServer, token: &str, size: usize) -> StatusCode {
    http.put(server.url("/v1/kv/big"))
        .bearer_auth(token)
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap()
        .status()
}

/// Wait (bounded) until `token` is accepted.
async fn until_accepted(http: &reqwest::Client, server: &ChildServer, token: &str) {
    for _ in 0..100 {
        let status = http
            .get(server.url("/v1/stats"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reloaded token was never accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_live_settings_without_dropping_requests() {
    let dir = temp_dir();
    let file = dir.path().join("infercache.toml");
    std::fs::write(&file, "auth_token = \"one\"\nmax_value_size = \"1KiB\"\n").unwrap();
    let server = ChildServer::spawn(
        &dir.path().join("data"),
        &["--config", file.to_str().unwrap()],
    );
    let http = reqwest::Client::new();
    assert_eq!(
        put(&http, &server, "one", 2048).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Requests keep flowing while the configuration changes under them.
    let steady = {
        let (http, url) = (http.clone(), server.url("/v1/stats"));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..200 {
                let r = http
                    .get(&url)
                    .bearer_auth("one")
                    .send()
                    .await
                    .expect("no dropped request");
                statuses.push(r.status());
            }
            statuses
        })
    };
    std::fs::write(&file, "auth_token = \"one\"\nmax_value_size = \"4KiB\"\n").unwrap();
    server.signal(libc::SIGHUP);
    let statuses = steady.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );

    std::fs::write(&file, "auth_token = \"two\"\nmax_value_size = \"4KiB\"\n").unwrap();
    server.signal(libc::SIGHUP);
    until_accepted(&http, &server, "two").await;
    assert_eq!(
        put(&http, &server, "two", 2048).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put(&http, &server, "one", 10).await,
        StatusCode::UNAUTHORIZED
    );

    // A broken file changes nothing.
    std::fs::write(&file, "max_value_size = \"a lot\"\n").unwrap();
    server.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        put(&http, &server, "two", 2048).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put(&http, &server, "two", 8192).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

/// The library's reload loop: `server::run` with a [`Source::reloading`]
/// re-reads the file on each signal and publishes a model's live knobs to
/// the model itself (here `max_inputs`, read on every embeddings request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_signal_publishes_model_knobs() {
    use infercache::{server::Source, Config, ServeArgs};

    let dir = temp_dir();
    let file = dir.path().join("infercache.toml");
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/minilm");
    let write = |max_inputs: usize| {
        let text = format!(
            "[[model]]\nname = \"minilm\"\npath = {:?}\ntokenizer = {:?}\nmax_inputs = {max_inputs}\n",
            assets.join("model.onnx"),
            assets.join("tokenizer.json"),
        );
        std::fs::write(&file, text).unwrap();
    };
    write(4);
    let args = ServeArgs {
        config: Some(file.clone()),
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    };
    let config = Config::from_args(&args).unwrap();
    let (reload, signal) = futures::channel::mpsc::unbounded::<()>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    let server = tokio::spawn(infercache::run(
        listener,
        Source::reloading(config, args, signal),
        async {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let embed = || async {
        http.post(&url)
            .json(&serde_json::json!({"model": "minilm", "input": ["one", "two"]}))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(embed().await, StatusCode::OK);
    write(1);
    reload.unbounded_send(()).unwrap();
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = embed().await;
        if status != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
