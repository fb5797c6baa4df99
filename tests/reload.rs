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
