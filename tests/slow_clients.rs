//! Slow and excess clients cannot hold the server: header and body read
//! timeouts close slow connections, and a connection limit makes excess
//! clients wait instead of costing memory. Bounded in time and traffic.

mod common;

use std::time::Duration;

use common::{
    raw_http::{send_partial, until_closed, Reply},
    temp_dir, TestServer,
};

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.header_timeout = Some(Duration::from_millis(300).into());
        a.body_timeout = Some(Duration::from_millis(300).into());
    })
    .await;
    let head = send_partial(server.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    until_closed(head, Duration::from_secs(5)).await;
    let body = send_partial(
        server.addr(),
        b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b",
    )
    .await;
    let answer = until_closed(body, Duration::from_secs(5)).await;
    let answer = Reply::parse(&answer, "PUT", Duration::ZERO).unwrap();
    assert!((400..500).contains(&answer.status), "{answer:?}");
    let get = server
        .client
        .get(server.url("/v1/kv/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404, "nothing half-written was stored");
    server.stop().await;
}

#[tokio::test]
async fn excess_connections_wait_for_a_slot() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| a.max_connections = Some(1)).await;
    let hog = send_partial(server.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let waiting = client.get(server.url("/healthz")).send().await;
    assert!(
        waiting.is_err_and(|e| e.is_timeout()),
        "served beyond the connection limit"
    );
    drop(hog);
    let served = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    drop(client);
    server.stop().await;
}
