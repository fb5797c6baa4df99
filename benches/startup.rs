//! Start-up time with a large disk tier (BENCHMARKS.md, "Start-up").
//!
//! Fills a store with N small entries (default 1,000,000), closes it, then
//! times `Store::open` and the first disk hit on the same directory: the
//! totals live in the database, so opening reads three numbers instead of
//! scanning. Then the crash case: a child process (this binary again)
//! reopens the directory, writes until the write-ahead log holds nearly a
//! whole checkpoint's worth of records and aborts; opening after that
//! repairs redb from its last checkpoint and replays the log.
//! Run: `cargo bench --bench startup -- [N]`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures::StreamExt;
use infercache::{Entry, Key, Store, StoreOptions};

/// What the child writes the log up to, in percent of the largest log it
/// saw before a checkpoint emptied it.
const LOG_FULL_PERCENT: u64 = 90;
/// The child's argument, before the data dir to fill the log of (then
/// abort) and its number of entries.
const CHILD: &str = "--fill-log-and-abort";

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        disk_capacity: 4 << 30,
        ..Default::default()
    }
}

/// Put `keys` with up to 2,048 writers at a time, retrying 429s, until
/// `done` says so (asked as writes complete).
async fn fill(store: &Store, keys: impl Iterator<Item = u64>, mut done: impl FnMut() -> bool) {
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in keys {
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
            if done() {
                // Now, not after the writes still in flight.
                return;
            }
        }
    }
    while pending.next().await.is_some() {}
}

/// Bytes in the write-ahead log's segments.
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("wal")).map_or(0, |list| {
        list.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// The child: overwrite entries through one checkpoint (the log's size
/// drops), then until the log is nearly as large as it was then, and die
/// without closing anything.
async fn fill_log_and_abort(dir: &Path, n: u64) -> ! {
    let store = Store::open(options(dir)).await.unwrap();
    let (mut peak, mut full) = (0, None);
    fill(&store, (0..).map(|i| i % n), || {
        let bytes = log_bytes(dir);
        if full.is_none() && bytes < peak / 2 {
            full = Some(peak * LOG_FULL_PERCENT / 100);
        }
        peak = peak.max(bytes);
        full.is_some_and(|full| bytes >= full)
    })
    .await;
    std::process::abort()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == CHILD) {
        let n = args[at + 2].parse().unwrap();
        fill_log_and_abort(Path::new(&args[at + 1]), n).await;
    }
    let n: u64 = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // `cargo test --all-targets` runs benches once as tests: keep that quick.
    let n = if args.iter().any(|a| a == "--bench") {
        n
    } else {
        1_000
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    let started = Instant::now();
    fill(&store, 0..n, || false).await;
    store.close().await;
    drop(store);
    let filled = started.elapsed();
    let size = std::fs::metadata(dir.path().join("infercache.redb"))
        .unwrap()
        .len();
    let (opened, first_hit) = open_and_hit(dir.path(), n).await;
    println!(
        "entries {n}, file {:.0} MiB, fill {:.1}s; open {:.1} ms, first disk hit {:.2} ms",
        size as f64 / (1 << 20) as f64,
        filled.as_secs_f64(),
        opened.as_secs_f64() * 1e3,
        first_hit.as_secs_f64() * 1e3
    );

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg(CHILD)
        .arg(dir.path())
        .arg(n.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborts");
    let log = log_bytes(dir.path());
    let (opened, first_hit) = open_and_hit(dir.path(), n).await;
    println!(
        "after abort() with {:.1} MiB of log: open (repair + replay) {:.1} ms, first disk hit {:.2} ms",
        log as f64 / (1 << 20) as f64,
        opened.as_secs_f64() * 1e3,
        first_hit.as_secs_f64() * 1e3
    );
}

/// Open the store in `dir` (holding `n` entries): the time to open, and
/// to the first disk hit after it.
async fn open_and_hit(dir: &Path, n: u64) -> (Duration, Duration) {
    let started = Instant::now();
    let store = Store::open(options(dir)).await.unwrap();
    let opened = started.elapsed();
    let (_, disk) = store.usage();
    let started = Instant::now();
    let hit = store
        .get(&Key::new(0, (n / 2).to_le_bytes()))
        .await
        .unwrap();
    let first_hit = started.elapsed();
    assert!(hit.is_some());
    assert_eq!(disk.entries, n);
    store.close().await;
    (opened, first_hit)
}
