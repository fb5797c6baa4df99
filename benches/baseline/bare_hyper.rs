//! Benchmark baseline, not part of the product.
//!
//! A bare hyper 1 HTTP/1.1 server that answers every request, whatever its
//! method or path, with the same 100-byte body. It is the ceiling the
//! infercache `GET /v1/kv/{key}` path is measured against: same runtime
//! (tokio multi-thread, default worker count), same HTTP stack (hyper
//! http1 with keep-alive), and nothing else — no router, no middleware, no
//! cache lookup. See BENCHMARKS.md and `benches/load/kv_get.sh`.
//!
//! Usage: `cargo run --release --example bare_hyper -- [ADDR]`
//! (ADDR defaults to 127.0.0.1:7700).

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The fixed response body: 100 bytes, the value size the KV benchmark
/// stores, so both servers put the same payload on the wire.
static BODY: [u8; 100] = [b'x'; 100];

/// Every request gets the same 200 with the fixed body.
async fn answer(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(&BODY))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7700".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bare_hyper (benchmark baseline) listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        // TCP_NODELAY is left at the OS default, as axum::serve (which
        // infercache uses) leaves it: only the HTTP work differs.
        tokio::spawn(async move {
            // One task per connection; http1 keeps the connection alive
            // between requests by default.
            let served = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
            if let Err(e) = served {
                // Clients (wrk) reset connections at the end of a run.
                if !e.is_incomplete_message() {
                    eprintln!("connection error: {e}");
                }
            }
        });
    }
}
