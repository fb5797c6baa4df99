//! Start-up time with a large disk tier (BENCHMARKS.md, "Start-up").
//!
//! Fills a store with N small entries (default 1,000,000), closes it, then
//! times `Store::open` and the first disk hit on the same directory: the
//! totals live in the database, so opening reads three numbers instead of
//! scanning. Run: `cargo bench --bench startup -- [N]`.

use std::time::{Duration, Instant};

use infercache::{Entry, Key, Store, StoreOptions};

fn options(dir: &std::path::Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        disk_capacity: 4 << 30,
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // `cargo test --all-targets` runs benches once as tests: keep that quick.
    let n = if std::env::args().any(|a| a == "--bench") {
        n
    } else {
        1_000
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    let fill = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    use futures::StreamExt;
    for i in 0..n {
        pending.push({
            let store = store.clone();
            async move {
                loop {
                    match store
                        .put(Key::new(0, i.to_le_bytes()), Entry::new(vec![7u8; 100]))
                        .await
                    {
                        Ok(()) => break,
                        Err(infercache::Error::Overloaded(_)) => {
                            tokio::time::sleep(Duration::from_millis(1)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        if pending.len() >= 2048 {
            pending.next().await;
        }
    }
    while pending.next().await.is_some() {}
    store.close().await;
    drop(store);
    let filled = fill.elapsed();
    let size = std::fs::metadata(dir.path().join("infercache.redb"))
        .unwrap()
        .len();

    let open = Instant::now();
    let store = Store::open(options(dir.path())).await.unwrap();
    let opened = open.elapsed();
    let (_, disk) = store.usage();
    let first = Instant::now();
    let hit = store
        .get(&Key::new(0, (n / 2).to_le_bytes()))
        .await
        .unwrap();
    let first_hit = first.elapsed();
    assert!(hit.is_some());
    assert_eq!(disk.entries, n);
    println!(
        "entries {n}, file {:.0} MiB, fill {:.1}s; open {:.1} ms, first disk hit {:.2} ms",
        size as f64 / (1 << 20) as f64,
        filled.as_secs_f64(),
        opened.as_secs_f64() * 1e3,
        first_hit.as_secs_f64() * 1e3
    );
    store.close().await;
}
