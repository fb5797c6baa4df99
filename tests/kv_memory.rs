//! A cached KV value costs about its own size in the server's memory, not
//! the connection buffer it arrived in.
//!
//! hyper reads requests into buffers of 8 KiB and hands a small body over
//! as a slice of one. Stored as is, every cached value keeps (a share of)
//! its buffer alive while the memory tier charges it only key + value +
//! 128 bytes. 15k PUTs of 32-byte values all stay in the (default,
//! 256 MiB) memory tier. Measured growth of the server's RSS (debug build):
//! copied, about 1 KiB per entry all told (moka's node, our entry, redb's
//! page cache), 14 MiB; as slices about 4 KiB per entry (a few small
//! requests share one buffer), 55 MiB. The bound, 28 MiB, sits a factor of
//! two from both. (200k PUTs would take minutes against a debug build on a
//! loaded machine; 15k show the same thing.)

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
    // Without the fix the growth was 55 MiB; mimalloc (the binary's
    // allocator) keeps freed pages a while longer than glibc, which puts
    // the fixed server at 20-30 MiB.
    const BOUND: u64 = 40 << 20;
    let dir = temp_dir();
    let server = ChildServer::spawn(dir.path(), &[]);
    let pid = server.child.id();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
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
    eprintln!(
        "{PUTS} PUTs in {:?}, RSS grew {} KiB",
        started.elapsed(),
        grown >> 10
    );
    assert!(
        grown < BOUND,
        "RSS grew {} MiB after {PUTS} small PUTs: cached values pin their read buffers",
        grown >> 20
    );
}

/// HTTP/1 answers are copied into each connection's write buffer, which
/// keeps its size for the next answer; big bodies go out in 64 KiB frames,
/// so a connection that once answered a big value keeps about hyper's
/// `max_buf_size` (~400 KiB), not the value. Measured growth for 16
/// connections that each read one 8 MiB value (debug build): framed 15 MiB,
/// unframed 150 MiB; the bound sits a factor of three from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_do_not_grow_connection_buffers() {
    const VALUE: usize = 8 << 20;
    const CONNECTIONS: usize = 16;
    const BOUND: u64 = 48 << 20;
    let dir = temp_dir();
    let server = ChildServer::spawn(dir.path(), &[]);
    let pid = server.child.id();
    let url = server.url("/v1/kv/big");
    let client = reqwest::Client::new();
    let put = client
        .put(&url)
        .body(vec![7u8; VALUE])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let got = client
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), VALUE);
    let before = rss(pid);
    // One client each: a connection of its own, kept open until measured.
    let clients: Vec<_> = (0..CONNECTIONS).map(|_| reqwest::Client::new()).collect();
    let lengths = futures::future::join_all(clients.iter().map(|c| async {
        let answer = c.get(&url).send().await.unwrap();
        assert_eq!(answer.headers()["x-cache-tier"], "memory");
        answer.bytes().await.unwrap().len()
    }))
    .await;
    assert!(lengths.iter().all(|&len| len == VALUE));
    let grown = rss(pid).saturating_sub(before);
    eprintln!(
        "{CONNECTIONS} GETs of {VALUE} bytes: RSS grew {} KiB",
        grown >> 10
    );
    assert!(
        grown < BOUND,
        "RSS grew {} MiB: connections keep copies of the big answer",
        grown >> 20
    );
    drop(clients);
}
