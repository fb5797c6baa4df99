//! HTTP/1 framing at the edge (ARCHITECTURE.md §1, "The hot path"): simple
//! requests are served without hyper, anything else by hyper, on the same
//! connection, in order; responses are framed as hyper frames them.

mod common;

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::Path,
    http::StatusCode,
    routing::{get, post},
    Router,
};
use common::raw_http::{find, Reply};
use infercache::testing::{serve, Limits};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};

fn app() -> Router {
    Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/path/{x}", get(|Path(x): Path<String>| async move { x }))
        .route(
            "/stream",
            get(|| async {
                let parts = ["one ", "two ", "three"].map(|s| Ok::<_, Infallible>(Bytes::from(s)));
                Body::from_stream(futures::stream::iter(parts))
            }),
        )
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
}

/// A server of `app` on a free port, until `stop` resolves.
async fn start_with(
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let limits = Limits::new(16, Duration::from_secs(10));
    (addr, tokio::spawn(serve(listener, app, limits, stop)))
}

/// A server of [`app`] on a free port, for the rest of the test.
async fn start() -> String {
    start_with(app(), std::future::pending()).await.0
}

/// Send `parts` (with a pause between them) on one connection and read
/// until the server closes it.
async fn exchange(addr: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tcp.write_all(part).await.unwrap();
    }
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("the server closes after `connection: close`")
        .unwrap();
    raw
}

fn one(raw: &[u8], method: &str) -> Reply {
    Reply::parse(raw, method, Duration::ZERO).unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_the_handover() {
    let addr = start().await;
    // Simple, then chunked (hyper's), then simple again (hyper's by now).
    let raw = exchange(
        &addr,
        &[b"GET /path/first HTTP/1.1\r\nhost: x\r\n\r\n\
            POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
            6\r\nsecond\r\n0\r\n\r\n\
            GET /path/third HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"],
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
    let at = |word: &str| text.find(word).unwrap_or_else(|| panic!("{word}: {text}"));
    assert!(
        at("first") < at("second") && at("second") < at("third"),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_still_on_its_way_is_read_whole() {
    let addr = start().await;
    let head =
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\nconnection: close\r\n\r\nabc";
    let reply = one(&exchange(&addr, &[head, b"def"]).await, "POST");
    assert_eq!((reply.status, &reply.body[..]), (200, &b"abcdef"[..]));
    // A body larger than a simple request's, in one write.
    let body = vec![b'x'; 200 << 10];
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let reply = one(&exchange(&addr, &[&request]).await, "POST");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, body);
}

#[tokio::test]
async fn responses_are_framed_as_hyper_frames_them() {
    let addr = start().await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    // Known length: content-length and a date; asked to close: closed.
    let reply = one(&exchange(&addr, &[get("/path/v").as_bytes()]).await, "GET");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header_str("content-length"), Some("1"));
    assert_eq!(reply.header_str("connection"), Some("close"));
    assert!(reply.header("date").is_some());
    assert_eq!(reply.body, b"v");
    // Empty header values are values too.
    let empty =
        "GET /path/e HTTP/1.1\r\nhost: x\r\nx-empty:\r\nx-blank:   \r\nconnection: close\r\n\r\n";
    let reply = one(&exchange(&addr, &[empty.as_bytes()]).await, "GET");
    assert_eq!((reply.status, &reply.body[..]), (200, &b"e"[..]));
    // Unknown length: chunked.
    let reply = one(&exchange(&addr, &[get("/stream").as_bytes()]).await, "GET");
    assert_eq!(reply.header_str("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.body, b"one two three");
    // 204: neither.
    let raw = exchange(&addr, &[get("/empty").as_bytes()]).await;
    let reply = one(&raw, "GET");
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("content-length"), None);
    assert_eq!(reply.header("transfer-encoding"), None);
    assert_eq!(&raw[find(&raw, b"\r\n\r\n").unwrap() + 4..], b"");
}

#[tokio::test]
async fn what_is_not_simple_is_answered_by_hyper() {
    let addr = start().await;
    let raw = exchange(&addr, &[b"GET /path/old HTTP/1.0\r\n\r\n"]).await;
    assert!(raw.starts_with(b"HTTP/1.0 200 OK\r\n"), "{raw:?}");
    let raw = exchange(&addr, &[b"NOT HTTP AT ALL\r\n\r\n"]).await;
    assert!(raw.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{raw:?}");
    let twice =
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab";
    let raw = exchange(&addr, &[twice]).await;
    assert!(raw.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{raw:?}");
}

#[tokio::test]
async fn a_drain_answers_the_request_in_progress_then_closes() {
    let release = Arc::new(Notify::new());
    let slow = Router::new().route(
        "/slow",
        get({
            let release = release.clone();
            || async move {
                release.notified().await;
                "done"
            }
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, served) = start_with(slow, async {
        let _ = stopped.await;
    })
    .await;
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    // Keep-alive: only the drain closes this connection.
    tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.notify_one();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("closed after its response")
        .unwrap();
    let reply = one(&raw, "GET");
    assert_eq!((reply.status, &reply.body[..]), (200, &b"done"[..]));
    assert_eq!(reply.header_str("connection"), Some("close"));
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve returns once drained")
        .unwrap();
}
