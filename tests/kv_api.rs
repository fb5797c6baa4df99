//! The KV API against the real server on a loopback port with a real redb
//! file: round trips, restart, capacity bounds, limits and bad input.

mod common;

use bytesize::ByteSize;
use common::{encode_key, get_text, temp_dir, TestServer};
use rand::{Rng, RngCore, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

async fn json(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).expect("a JSON body")
}

/// Assert a JSON error response with `status`, and return its message.
async fn expect_error(resp: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(resp.status(), status);
    let body = json(resp).await;
    body["error"]
        .as_str()
        .expect("an error message")
        .to_string()
}

#[tokio::test]
async fn random_binary_values_round_trip() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut items = Vec::new();
    for i in 0..40 {
        let mut key = vec![0u8; rng.random_range(1..=64)];
        rng.fill_bytes(&mut key);
        // A few large values, up to 1 MiB, and many small ones.
        let len = if i % 8 == 0 {
            rng.random_range(0..=1 << 20)
        } else {
            rng.random_range(0..4096)
        };
        let mut value = vec![0u8; len];
        rng.fill_bytes(&mut value);
        let content_type = format!("application/x-test-{i}");
        items.push((key, value, content_type));
    }
    for (key, value, ct) in &items {
        let resp = server
            .client
            .put(server.url(&format!("/v1/kv/{}", encode_key(key))))
            .header("content-type", ct)
            .body(value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    for (key, value, ct) in &items {
        let url = server.url(&format!("/v1/kv/{}", encode_key(key)));
        let resp = server.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], ct.as_str());
        assert_eq!(resp.headers()["x-cache-tier"], "memory");
        assert_eq!(&resp.bytes().await.unwrap()[..], &value[..]);
        let head = server.client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            head.headers()["content-length"],
            value.len().to_string().as_str()
        );
    }
    for (key, _, _) in &items {
        let url = server.url(&format!("/v1/kv/{}", encode_key(key)));
        for _ in 0..2 {
            // DELETE is idempotent.
            let resp = server.client.delete(&url).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        }
        let resp = server.client.get(&url).send().await.unwrap();
        expect_error(resp, StatusCode::NOT_FOUND).await;
        let head = server.client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::NOT_FOUND);
    }
    let stats = server.get_json("/v1/stats").await;
    assert_eq!(stats["disk"]["entries"], 0);
    server.stop().await;
}

#[tokio::test]
async fn entries_survive_a_restart_and_expired_ones_do_not() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    for i in 0..50 {
        let ttl = if i % 5 == 0 { "?ttl=1" } else { "" };
        let resp = server
            .client
            .put(server.url(&format!("/v1/kv/key-{i}{ttl}")))
            .header("content-type", "text/plain")
            .body(format!("value-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    server.stop().await;
    // Let the one-second TTLs pass (real time: they are wall-clock deadlines
    // stored on disk and checked by the next process).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let server = TestServer::start(dir.path(), |_| {}).await;
    for i in 0..50 {
        let url = server.url(&format!("/v1/kv/key-{i}"));
        let first = server.client.get(&url).send().await.unwrap();
        if i % 5 == 0 {
            assert_eq!(first.status(), StatusCode::NOT_FOUND, "key-{i} expired");
            continue;
        }
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["x-cache-tier"], "disk");
        assert_eq!(first.headers()["content-type"], "text/plain");
        assert_eq!(first.text().await.unwrap(), format!("value-{i}"));
        let second = server.client.get(&url).send().await.unwrap();
        assert_eq!(second.headers()["x-cache-tier"], "memory");
        assert_eq!(second.text().await.unwrap(), format!("value-{i}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn tiers_stay_within_capacity() {
    const MEMORY: u64 = 256 << 10;
    const DISK: u64 = 1 << 20;
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.memory_capacity = Some(ByteSize(MEMORY));
        a.disk_capacity = Some(ByteSize(DISK));
    })
    .await;
    // Ten times the disk capacity, in 8 KiB values, 16 writers at a time.
    let value = vec![7u8; 8 << 10];
    let total = (10 * DISK) as usize / value.len();
    let writes = futures::stream::iter(0..total).map(|i| {
        let (client, url, value) = (
            server.client.clone(),
            server.url(&format!("/v1/kv/k{i}")),
            value.clone(),
        );
        async move { client.put(url).body(value).send().await.unwrap().status() }
    });
    use futures::StreamExt;
    let statuses: Vec<StatusCode> = writes.buffer_unordered(16).collect().await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NO_CONTENT));
    let stats = server.get_json("/v1/stats").await;
    // Both tiers count their bytes exactly (moka's weighted size after its
    // pending work, our own totals on disk), so no slack is allowed here.
    let memory_bytes = stats["memory"]["bytes"].as_u64().unwrap();
    let disk_bytes = stats["disk"]["bytes"].as_u64().unwrap();
    assert!(memory_bytes <= MEMORY, "memory {memory_bytes} > {MEMORY}");
    assert!(disk_bytes <= DISK, "disk {disk_bytes} > {DISK}");
    // The disk bound is the file's: the counted bytes are kept low enough
    // for redb's pages (an 8 KiB value takes a 16 KiB page) and its
    // doubling of the file to fit, about a fifth of the capacity here.
    assert!(disk_bytes > DISK / 8, "the disk tier is used: {disk_bytes}");
    // Most entries were evicted from disk, oldest first: the newest is
    // there, and the oldest is only in memory if moka still holds it.
    let disk_entries = stats["disk"]["entries"].as_u64().unwrap();
    assert!(
        disk_entries < total as u64 / 5,
        "{disk_entries} of {total} on disk"
    );
    let newest = server
        .client
        .get(server.url(&format!("/v1/kv/k{}", total - 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(newest.status(), StatusCode::OK);
    let oldest = server
        .client
        .get(server.url("/v1/kv/k0"))
        .send()
        .await
        .unwrap();
    if oldest.status() == StatusCode::OK {
        assert_eq!(oldest.headers()["x-cache-tier"], "memory");
    } else {
        assert_eq!(oldest.status(), StatusCode::NOT_FOUND);
    }
    // Stopping waits for the writer, and so for the compaction that
    // follows a commit which left the file too large.
    server.stop().await;
    let file = std::fs::metadata(common::redb_file(dir.path()))
        .unwrap()
        .len();
    eprintln!("counted {disk_bytes} B, file {file} B of {DISK}");
    assert!(file <= DISK + DISK / 5, "redb file is {file} bytes");
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_server_keeps_answering() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| a.max_value_size = Some(ByteSize(1024))).await;
    let c = &server.client;
    let long_key = "k".repeat(1025);
    let msg = expect_error(
        c.get(server.url(&format!("/v1/kv/{long_key}")))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("1025"), "{msg}");
    let ok_key = "k".repeat(1024);
    let resp = c
        .put(server.url(&format!("/v1/kv/{ok_key}")))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    expect_error(
        c.put(server.url("/v1/kv/")).body("v").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let msg = expect_error(
        c.put(server.url("/v1/kv/big"))
            .body(vec![0u8; 1025])
            .send()
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(msg.contains("max_value_size"), "{msg}");
    // The same without a Content-Length (chunked): the limit still holds.
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![1u8; 512])));
    let resp = c
        .put(server.url("/v1/kv/big"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    for query in ["ttl=0", "ttl=abc", "ttl=-5", "tll=5"] {
        let resp = c
            .put(server.url(&format!("/v1/kv/x?{query}")))
            .body("v")
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST).await;
    }
    expect_error(
        c.get(server.url("/v1/nope")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(
        c.post(server.url("/v1/kv/x")).send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    expect_error(
        c.put(server.url("/healthz")).send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    let resp = c
        .put(server.url("/v1/kv/ct"))
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(b"text/\xffplain").unwrap(),
        )
        .body("v")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    // None of that hurt the server or stored anything.
    assert_eq!(
        c.get(server.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(server.url("/v1/kv/big"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test]
async fn bearer_token_guards_everything_but_health() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| a.auth_token = Some("s3cret".into())).await;
    let c = &server.client;
    assert_eq!(
        c.get(server.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    for path in ["/v1/kv/a", "/v1/stats", "/metrics"] {
        expect_error(
            c.get(server.url(path)).send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
        )
        .await;
        let wrong = c
            .get(server.url(path))
            .bearer_auth("s3cres")
            .send()
            .await
            .unwrap();
        expect_error(wrong, StatusCode::UNAUTHORIZED).await;
    }
    let put = c
        .put(server.url("/v1/kv/a"))
        .bearer_auth("s3cret")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let get = c
        .get(server.url("/v1/kv/a"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "v");
    server.stop().await;
}

#[tokio::test]
async fn a_full_write_queue_answers_429_with_retry_after() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.write_queue = Some(1);
        a.write_batch = Some(1);
    })
    .await;
    let mut seen = None;
    for round in 0..20 {
        let puts = (0..64).map(|i| {
            server
                .client
                .put(server.url(&format!("/v1/kv/r{round}-{i}")))
                .body("v")
                .send()
        });
        for resp in futures::future::join_all(puts).await {
            let resp = resp.unwrap();
            match resp.status() {
                StatusCode::NO_CONTENT => {}
                StatusCode::TOO_MANY_REQUESTS => seen = Some(resp),
                other => panic!("unexpected {other}"),
            }
        }
        if seen.is_some() {
            break;
        }
    }
    let resp = seen.expect("a 64-way burst into a one-slot queue is refused at least once");
    assert_eq!(resp.headers()["retry-after"], "1");
    expect_error(resp, StatusCode::TOO_MANY_REQUESTS).await;
    let put = server
        .client
        .put(server.url("/v1/kv/after"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    server.stop().await;
}

#[tokio::test]
async fn metrics_name_the_cache_series() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let c = &server.client;
    c.put(server.url("/v1/kv/a"))
        .body("v")
        .send()
        .await
        .unwrap();
    c.get(server.url("/v1/kv/a")).send().await.unwrap();
    c.get(server.url("/v1/kv/b")).send().await.unwrap();
    // The disk tier counts a put once redb has it, just after the 204.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = get_text(c, &server.url("/metrics")).await;
    while !text.contains("infercache_entries{tier=\"disk\"} 1")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = get_text(c, &server.url("/metrics")).await;
    }
    for series in [
        "infercache_cache_hits_total{tier=\"memory\"} 1",
        "infercache_cache_misses_total 1",
        "infercache_entries{tier=\"disk\"} 1",
        "infercache_bytes{tier=\"memory\"}",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    server.stop().await;
}
