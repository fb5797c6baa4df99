//! Memoizer benchmarks (BENCHMARKS.md, "Memoizer").
//!
//! - `hit_path/*`: a memory hit including key derivation for a 1 KiB input,
//!   against the floor measured in the same run: blake3 of the same input
//!   plus a bare moka get. Both run inside `Runtime::block_on` so the
//!   runtime's entry cost is on both sides.
//! - `fan_out/10000`: 10,000 waiters on one key; the time from the
//!   computation's end to the last waiter's wake-up, against
//!   `fan_out/floor_10000`: 10,000 bare tasks each woken by its own
//!   oneshot, measured the same way in the same run. Each waiter derives
//!   its own key, as a request does.
//!
//! Every benchmark here runs with the server's allocator (mimalloc).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use infercache::{
    key::{tensor_key, TensorRef},
    Key, Lookup, Memo, Store, StoreOptions,
};
use tokio::runtime::Runtime;

/// The allocator the server runs with (ARCHITECTURE.md §1, "The hot
/// path"): the fan-out frees blocks on another thread than allocated them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn open_memo(rt: &Runtime, dir: &std::path::Path) -> Memo {
    rt.block_on(async {
        let store = Store::open(StoreOptions {
            dir: dir.to_path_buf(),
            ..Default::default()
        })
        .await
        .unwrap();
        Memo::new(store)
    })
}

fn row_key(input: &[u8]) -> Key {
    let row = TensorRef {
        name: "x",
        datatype: "UINT8",
        shape: &[1024],
        data: input,
    };
    tensor_key(1, "bench", &[0; 32], &[row])
}

fn hit_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let memo = open_memo(&rt, dir.path());
    let input: Vec<u8> = (0..1024u32).map(|i| (i * 31) as u8).collect();
    rt.block_on(async {
        memo.get_or_compute(row_key(&input), Lookup::default(), || async {
            Ok::<_, String>(Bytes::from_static(&[0u8; 16]))
        })
        .await
        .unwrap();
    });
    let floor: moka::sync::Cache<[u8; 32], Bytes> = moka::sync::Cache::new(1 << 20);
    floor.insert(
        *blake3::hash(&input).as_bytes(),
        Bytes::from_static(&[0u8; 16]),
    );

    let mut group = c.benchmark_group("hit_path");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("floor_blake3_plus_moka_get", |b| {
        b.iter(|| {
            rt.block_on(async {
                let digest = blake3::hash(std::hint::black_box(&input));
                floor.get(digest.as_bytes()).unwrap()
            })
        })
    });
    // The two halves of the hit path, to show where its time goes.
    group.bench_function("part_key_derivation", |b| {
        b.iter(|| rt.block_on(async { row_key(std::hint::black_box(&input)) }))
    });
    group.bench_function("part_blake3_only", |b| {
        b.iter(|| rt.block_on(async { blake3::hash(std::hint::black_box(&input)) }))
    });
    group.bench_function("memo_key_and_memory_hit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let key = row_key(std::hint::black_box(&input));
                memo.get_or_compute(key, Lookup::default(), || async {
                    Err::<Bytes, _>("a hit never computes")
                })
                .await
                .unwrap()
            })
        })
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    const WAITERS: usize = 10_000;
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let memo = open_memo(&rt, dir.path());
    let mut group = c.benchmark_group("fan_out");
    group.sample_size(10);
    // Criterion calls the routine more than once: every round needs a key
    // never computed before.
    let mut round = 0u64;
    group.bench_function("10000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                total += rt.block_on(one_fan_out(&memo, round, WAITERS));
            }
            total
        })
    });
    group.bench_function("floor_10000", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(one_floor(WAITERS))).sum())
    });
    group.finish();
}

/// The waiters' wake-ups: the last one to wake says so; the others'
/// results are collected afterwards, so that joining them does not wake
/// the measuring thread (and slow the workers) while they are still waking.
struct Wakes {
    left: AtomicUsize,
    all: tokio::sync::Notify,
}

impl Wakes {
    fn new(waiters: usize) -> Arc<Wakes> {
        Arc::new(Wakes {
            left: AtomicUsize::new(waiters),
            all: tokio::sync::Notify::new(),
        })
    }

    /// Called by each waiter once it has its result.
    fn woke(&self) -> Instant {
        let woke = Instant::now();
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all.notify_one();
        }
        woke
    }

    /// The last wake-up, once every waiter has woken.
    async fn last(&self, tasks: Vec<tokio::task::JoinHandle<Instant>>) -> Instant {
        self.all.notified().await;
        let mut last = None;
        for t in tasks {
            let woke = t.await.unwrap();
            last = Some(last.map_or(woke, |l: Instant| l.max(woke)));
        }
        last.expect("at least one waiter")
    }
}

/// From the computation's end to the last of `waiters` waking up.
async fn one_fan_out(memo: &Memo, round: u64, waiters: usize) -> Duration {
    let id = format!("fan-out-{round}");
    let (release, gate) = tokio::sync::watch::channel(false);
    let ended: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let before = memo.store().metrics().coalesced_count();
    let wakes = Wakes::new(waiters);
    let tasks: Vec<_> = (0..waiters)
        .map(|_| {
            // Each caller derives its own key, as a request does.
            let key = Key::new(1, &id);
            let (memo, ended) = (memo.clone(), ended.clone());
            let wakes = wakes.clone();
            let mut gate = gate.clone();
            tokio::spawn(async move {
                memo.get_or_compute(key, Lookup::default(), move || async move {
                    gate.wait_for(|open| *open).await.unwrap();
                    *ended.lock() = Some(Instant::now());
                    Ok::<_, String>(Bytes::from_static(b"result"))
                })
                .await
                .unwrap();
                wakes.woke()
            })
        })
        .collect();
    // Open the gate once every waiter has joined the flight.
    while memo.store().metrics().coalesced_count() - before < waiters as u64 - 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    release.send(true).unwrap();
    let last = wakes.last(tasks).await;
    let ended = ended.lock().expect("the computation ran");
    last.duration_since(ended)
}

/// The floor of [`one_fan_out`]: `waiters` bare tasks each awaiting its
/// own oneshot, and one task that, once the gate opens, sends to them all.
async fn one_floor(waiters: usize) -> Duration {
    let (release, mut gate) = tokio::sync::watch::channel(false);
    let joined = Arc::new(AtomicUsize::new(0));
    let wakes = Wakes::new(waiters);
    let (senders, tasks): (Vec<_>, Vec<_>) = (0..waiters)
        .map(|_| {
            let (tx, rx) = tokio::sync::oneshot::channel::<Bytes>();
            let (joined, wakes) = (joined.clone(), wakes.clone());
            let task = tokio::spawn(async move {
                joined.fetch_add(1, Ordering::Relaxed);
                rx.await.unwrap();
                wakes.woke()
            });
            (tx, task)
        })
        .unzip();
    let sender = tokio::spawn(async move {
        gate.wait_for(|open| *open).await.unwrap();
        let ended = Instant::now();
        for tx in senders {
            let _ = tx.send(Bytes::from_static(b"result"));
        }
        ended
    });
    // Open the gate once every waiter waits.
    while joined.load(Ordering::Relaxed) < waiters {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    release.send(true).unwrap();
    let last = wakes.last(tasks).await;
    last.duration_since(sender.await.unwrap())
}

criterion_group!(benches, hit_path, fan_out);
criterion_main!(benches);
