//! No connection holds a slot forever: silent sockets, a partial HTTP/2
//! preface and idle h2c connections are closed after `header_timeout`; the
//! HTTP/2 stream bound keeps the connection limit a bound on requests; and
//! shutdown closes what is still open at the drain deadline.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{routing::get, Router};
use common::{raw_http::send_partial, temp_dir, TestServer};
use infercache::testing::{serve, Limits, MAX_CONCURRENT_STREAMS};
use tokio::{net::TcpStream, sync::Notify};

/// An h2c (prior knowledge) connection to `addr`.
async fn h2c(addr: &str) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The status of `GET path` over `client`, or the error that ended it.
async fn h2_get(
    mut client: h2::client::SendRequest<bytes::Bytes>,
    path: &str,
) -> Result<http::StatusCode, h2::Error> {
    client = client.ready().await?;
    let request = http::Request::get(format!("http://x{path}"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true)?;
    Ok(response.await?.status())
}

/// What a client that holds a connection without a request in progress
/// does with it.
#[derive(Debug, Clone, Copy)]
enum Hog {
    Silent,
    PartialPreface,
    IdleH2c,
    IdleHttp1,
}

async fn hog(kind: Hog, addr: &str) -> Box<dyn std::any::Any + Send> {
    match kind {
        Hog::Silent => Box::new(TcpStream::connect(addr).await.unwrap()),
        Hog::PartialPreface => Box::new(send_partial(addr, b"PRI * HTTP/2.0\r\n").await),
        Hog::IdleH2c => {
            let client = h2c(addr).await;
            assert_eq!(h2_get(client.clone(), "/healthz").await.unwrap(), 200);
            Box::new(client)
        }
        Hog::IdleHttp1 => {
            let client = reqwest::Client::new();
            let url = format!("http://{addr}/healthz");
            assert_eq!(client.get(url).send().await.unwrap().status(), 200);
            Box::new(client)
        }
    }
}

#[tokio::test]
async fn connections_without_a_request_free_their_slots() {
    for kind in [
        Hog::Silent,
        Hog::PartialPreface,
        Hog::IdleH2c,
        Hog::IdleHttp1,
    ] {
        let dir = temp_dir();
        let server = TestServer::start(dir.path(), |a| {
            a.max_connections = Some(2);
            a.header_timeout = Some(Duration::from_millis(500).into());
        })
        .await;
        let addr = server.addr();
        let hogs = [hog(kind, addr).await, hog(kind, addr).await];
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let answer = client.get(server.url("/healthz")).send().await;
        assert!(
            answer.as_ref().is_ok_and(|r| r.status() == 200),
            "{kind:?}: /healthz did not answer within 2 s: {answer:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{kind:?}");
        drop((hogs, client));
        server.stop().await;
    }
}

/// A router whose `/hang` never answers, counting the requests it holds.
fn hanging(entered: Arc<AtomicUsize>, notify: Arc<Notify>) -> Router {
    Router::new().route(
        "/hang",
        get(move || async move {
            entered.fetch_add(1, Ordering::SeqCst);
            notify.notify_waiters();
            std::future::pending::<()>().await;
        }),
    )
}

async fn until(entered: &AtomicUsize, notify: &Notify, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while entered.load(Ordering::SeqCst) < n {
            let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;
        }
    })
    .await
    .expect("the requests reached the handler");
}

/// `serve` on 127.0.0.1:0 in the background.
struct Served {
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(app: Router, limits: Limits) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        Served { addr, stop, task }
    }

    /// Shut down; resolves when `serve` has returned.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn http2_streams_per_connection_are_bounded() {
    let (entered, notify) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let limits = Limits {
        drain_timeout: Duration::from_millis(100),
        ..Limits::new(1, Duration::from_secs(5))
    };
    let server = Served::start(hanging(entered.clone(), notify.clone()), limits).await;
    let client = h2c(&server.addr).await;
    let requests: Vec<_> = (0..MAX_CONCURRENT_STREAMS + 50)
        .map(|_| tokio::spawn(h2_get(client.clone(), "/hang")))
        .collect();
    until(&entered, &notify, MAX_CONCURRENT_STREAMS as usize).await;
    // Give any stream beyond the bound time to arrive, should it be let in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        entered.load(Ordering::SeqCst),
        MAX_CONCURRENT_STREAMS as usize
    );
    server.stop().await;
    for request in requests {
        request.abort();
    }
}

#[tokio::test]
async fn shutdown_closes_connections_still_busy_at_the_drain_deadline() {
    let (entered, notify) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let limits = Limits {
        drain_timeout: Duration::from_millis(300),
        ..Limits::new(4, Duration::from_secs(5))
    };
    let server = Served::start(hanging(entered.clone(), notify.clone()), limits).await;
    let addr = server.addr.clone();
    let http1 = tokio::spawn(
        reqwest::Client::new()
            .get(format!("http://{addr}/hang"))
            .send(),
    );
    let http2 = tokio::spawn(h2_get(h2c(&addr).await, "/hang"));
    until(&entered, &notify, 2).await;
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("shutdown finished soon after the drain deadline");
    let closed = Duration::from_secs(5);
    let answer = tokio::time::timeout(closed, http1)
        .await
        .expect("HTTP/1 closed");
    assert!(answer.unwrap().is_err());
    let answer = tokio::time::timeout(closed, http2)
        .await
        .expect("h2c closed");
    assert!(answer.unwrap().is_err());
}

#[tokio::test]
async fn a_request_longer_than_the_idle_deadline_is_answered() {
    let slow = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(900)).await;
            "done"
        }),
    );
    let server = Served::start(slow, Limits::new(2, Duration::from_millis(300))).await;
    let addr = server.addr.clone();
    assert_eq!(h2_get(h2c(&addr).await, "/slow").await.unwrap(), 200);
    let http1 = reqwest::get(format!("http://{addr}/slow")).await.unwrap();
    assert_eq!(http1.status(), 200);
    server.stop().await;
}
