//! A cached KV value costs about its own size in the server's memory, not
//! the connection buffer it arrived in.
//!
//! hyper reads each request into a fresh buffer of at least 8 KiB and hands
//! a small body over as a slice of it. Stored as is, every cached value
//! would keep its whole buffer alive while the memory tier charges it only
//! key + value + 128 bytes. 15k PUTs of 32-byte values all stay in the
//! (default, 256 MiB) memory tier: as slices they pin at least
//! 15k x 8 KiB = 117 MiB; copied, they take about 15k x (32 B value + moka's
//! node and our entry, a few hundred bytes) = 5-10 MiB, plus redb's page
//! cache for the same entries (a few MiB). Growth of the server's RSS under
//! 48 MiB tells the two apart with room on both sides. (200k PUTs would
//! take minutes against a debug build on a loaded machine; 15k show the
//! same thing.)

mod common;

use common::{temp_dir, ChildServer};
use futures::StreamExt;

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_values_do_not_pin_connection_buffers() {
    const PUTS: usize = 15_000;
    const BOUND: u64 = 48 << 20;
    let dir = temp_dir();
    let server = ChildServer::spawn(dir.path(), &[]);
    let pid = server.child.id();
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    let idle = rss(pid);
    let started = std::time::Instant::now();
    let failed = futures::stream::iter(0..PUTS)
        .map(|i| {
            let put = client
                .put(server.url(&format!("/v1/kv/k{i}")))
                .body(format!("{i:032}"));
            async move { put.send().await.map_or(true, |r| r.status() != 204) }
        })
        .buffer_unordered(64)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    assert_eq!(failed, 0);
    let grown = rss(pid).saturating_sub(idle);
    eprintln!("{PUTS} PUTs in {:?}, RSS grew {} KiB", started.elapsed(), grown >> 10);
    assert!(
        grown < BOUND,
        "RSS grew {} MiB after {PUTS} small PUTs: cached values pin their read buffers",
        grown >> 20
    );
}
