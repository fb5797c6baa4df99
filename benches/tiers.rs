//! In-process micro-benchmarks of the two-tier store (no HTTP).
//!
//! `cargo bench --bench tiers` (about a minute). Every benchmark opens its
//! own `Store` in a temporary directory on one tokio multi-thread runtime
//! (default worker count) and uses 100-byte values, like the load
//! benchmarks in `benches/load/`. Results and their reading: BENCHMARKS.md.
//!
//! Timing uses `iter_custom` around one `block_on` per sample, so what is
//! measured is the store call itself, not entering the runtime per call.
//! (criterion's `to_async` needs its `async_tokio` feature, which the
//! dev-dependency leaves off.)
//!
//! - `get/memory_hit`: `Store::get` of a key the memory tier holds.
//! - `get/disk_hit`: `Store::get` with a 1-byte memory tier, cycling over
//!   10 000 keys, so every read goes to redb (on a blocking thread) and
//!   its promotion to memory is evicted before the key comes round again.
//!   redb's page cache and the OS page cache hold the file: this is the
//!   disk tier's software path, not the device.
//! - `put/durable_1`: `Store::put` awaited one at a time: a full group
//!   commit (redb transaction + fsync) per write.
//! - `put/durable_64`: 64 tasks each awaiting `Store::put` in a loop; time
//!   per write, so group commit shares each fsync.
//! - `put/durable_1024`: 1024 writers (one full `write_batch`): the
//!   writer's ceiling when every commit is full. (`Store::put_detached`,
//!   whose sustained rate this is, was removed from the API.)

use std::{
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use infercache::{Entry, Key, Store, StoreOptions, Tier};
use tokio::runtime::Runtime;

const VALUE: &[u8; 100] = &[b'v'; 100];
/// Keys written before the disk-hit benchmark.
const DISK_KEYS: u64 = 10_000;
/// Concurrent writers in `put/durable_64`, as in `benches/load/kv_put.sh`.
const WRITERS: u64 = 64;
/// Writers that fill one commit (the default `write_batch`).
const FULL_BATCH: u64 = 1024;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn entry() -> Entry {
    Entry::new(Bytes::from_static(VALUE))
}

/// Keys unique across the whole run, so every put is an insert.
fn fresh_key() -> Key {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Key::new(0, format!("bench-{n:012}"))
}

fn disk_key(i: u64) -> Key {
    Key::new(0, format!("disk-{i:08}"))
}

/// A store in a new temporary directory (kept alive by the returned guard).
fn open(rt: &Runtime, memory_capacity: u64, write_queue: usize) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = StoreOptions {
        dir: dir.path().to_path_buf(),
        memory_capacity,
        write_queue,
        ..StoreOptions::default()
    };
    let store = rt.block_on(Store::open(options)).expect("open store");
    (store, dir)
}

fn close(rt: &Runtime, store: Store) {
    rt.block_on(store.close());
}

fn gets(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));

    // Memory-tier hit.
    let (store, _dir) = open(&rt, 64 << 20, 4096);
    let key = Key::new(0, "hot");
    rt.block_on(store.put(key.clone(), entry())).unwrap();
    let (_, tier) = rt.block_on(store.get(&key)).unwrap().unwrap();
    assert_eq!(tier, Tier::Memory, "setup: the hot key must be in memory");
    group.bench_function("memory_hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(store.get(black_box(&key)).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    close(&rt, store);

    // Disk-tier hit: a 1-byte memory tier holds nothing for long.
    let (store, _dir) = open(&rt, 1, 16_384);
    rt.block_on(async {
        let puts = (0..DISK_KEYS).map(|i| store.put(disk_key(i), entry()));
        for done in futures::future::join_all(puts).await {
            done.unwrap();
        }
    });
    let disk_hits = rt.block_on(async {
        let mut hits = 0;
        for i in 0..DISK_KEYS {
            let (_, tier) = store.get(&disk_key(i)).await.unwrap().unwrap();
            hits += u64::from(tier == Tier::Disk);
        }
        hits
    });
    assert!(
        disk_hits * 100 >= DISK_KEYS * 99,
        "setup: only {disk_hits} of {DISK_KEYS} reads went to disk"
    );
    let mut next = 0u64;
    group.bench_function("disk_hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let key = disk_key(next % DISK_KEYS);
                    next += 1;
                    black_box(store.get(&key).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    let (_, tier) = rt
        .block_on(store.get(&disk_key(next % DISK_KEYS)))
        .unwrap()
        .unwrap();
    assert_eq!(tier, Tier::Disk, "after the run: reads must still hit disk");
    close(&rt, store);
    group.finish();
}

fn puts(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("put");
    group.throughput(Throughput::Elements(1));

    // One writer: every put is its own durable commit.
    let (store, _dir) = open(&rt, 256 << 20, 4096);
    group.bench_function("durable_1", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    store.put(fresh_key(), entry()).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    close(&rt, store);

    // 64 writers: group commit shares the fsync. Time per write.
    let (store, _dir) = open(&rt, 256 << 20, 4096);
    group.bench_function("durable_64", |b| {
        b.iter_custom(|iters| rt.block_on(concurrent_puts(&store, iters, WRITERS)))
    });
    close(&rt, store);

    // As many writers as one commit takes (write_batch, 1024 by default):
    // the writer's ceiling with full batches. This stands in for the
    // removed `put_detached`, whose sustained rate was the same thing.
    let (store, _dir) = open(&rt, 256 << 20, 4096);
    group.bench_function("durable_1024", |b| {
        b.iter_custom(|iters| rt.block_on(concurrent_puts(&store, iters, FULL_BATCH)))
    });
    close(&rt, store);
    group.finish();
}

/// `iters` durable puts spread over `writers` tasks; the time they take.
async fn concurrent_puts(store: &Store, iters: u64, writers: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let n = iters / writers + u64::from(w < iters % writers);
            tokio::spawn(async move {
                for _ in 0..n {
                    store.put(fresh_key(), entry()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = gets, puts
}
criterion_main!(benches);
