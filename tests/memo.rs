//! The memoizer's semantics, one test each (ARCHITECTURE.md §3):
//! coalescing, cancellation, errors, panics, deadlines, the completion
//! race, and the cache-control policies. A real store (redb in a temp dir)
//! under every test; computations are counted with atomics.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use infercache::{CacheStatus, Error, Key, Lookup, Memo, Policy, Store, StoreOptions, Tier};

async fn memo(dir: &std::path::Path) -> Memo {
    let store = Store::open(StoreOptions {
        dir: dir.to_path_buf(),
        ..Default::default()
    })
    .await
    .unwrap();
    Memo::new(store)
}

/// A computation that counts its runs, takes `delay`, and returns `value`.
fn counted(
    runs: &Arc<AtomicUsize>,
    delay: Duration,
    value: &'static str,
) -> impl FnOnce() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<&'static str, String>> + Send>,
> {
    let runs = runs.clone();
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(value)
        })
    }
}

/// Wait (in paused time) until the memoizer is idle.
async fn settle(memo: &Memo) {
    for _ in 0..1000 {
        if memo.pending() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{} flights never finished", memo.pending());
}

#[tokio::test(start_paused = true)]
async fn a_thousand_callers_share_one_computation() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let key = Key::new(1, "one");
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let (memo, key, work) = (
                memo.clone(),
                key.clone(),
                counted(&runs, Duration::from_millis(50), "result"),
            );
            tokio::spawn(async move { memo.get_or_compute(key, Lookup::default(), work).await })
        })
        .collect();
    let mut misses = 0;
    for caller in callers {
        let (entry, status) = caller.await.unwrap().unwrap();
        assert_eq!(entry.value, "result");
        misses += usize::from(status == CacheStatus::Miss);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(misses, 1);
    settle(&memo).await;
    assert_eq!(memo.store().metrics().in_flight(), 0);
    let again = memo
        .get_or_compute(key, Lookup::default(), counted(&runs, Duration::ZERO, "x"))
        .await
        .unwrap();
    assert_eq!(again.1, CacheStatus::Hit(Tier::Memory));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_does_not_fail_its_followers() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let key = Key::new(1, "leader-goes");
    let leader = {
        let (memo, key, work) = (
            memo.clone(),
            key.clone(),
            counted(&runs, Duration::from_millis(100), "v"),
        );
        tokio::spawn(async move { memo.get_or_compute(key, Lookup::default(), work).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let followers: Vec<_> = (0..3)
        .map(|_| {
            let (memo, key, work) = (
                memo.clone(),
                key.clone(),
                counted(&runs, Duration::ZERO, "other"),
            );
            tokio::spawn(async move { memo.get_or_compute(key, Lookup::default(), work).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for f in followers {
        let (entry, status) = f.await.unwrap().unwrap();
        assert_eq!(
            (entry.value.as_ref(), status),
            (&b"v"[..], CacheStatus::Coalesced)
        );
    }
    settle(&memo).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Stored durably: a fresh store on the same directory has it.
    let stored = memo.store().get(&key).await.unwrap().expect("stored");
    assert_eq!(stored.0.value, "v");
}

#[tokio::test(start_paused = true)]
async fn when_every_caller_leaves_the_computation_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let key = Key::new(1, "nobody-waits");
    let callers: Vec<_> = (0..5)
        .map(|_| {
            let (memo, key) = (memo.clone(), key.clone());
            let (started, finished) = (started.clone(), finished.clone());
            tokio::spawn(async move {
                memo.get_or_compute(key, Lookup::default(), move || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>("never")
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(memo.store().metrics().in_flight(), 1);
    for c in &callers {
        c.abort();
    }
    for c in callers {
        assert!(c.await.unwrap_err().is_cancelled());
    }
    // Documented behaviour: the computation is cancelled, not finished.
    assert_eq!(memo.pending(), 0);
    assert_eq!(memo.store().metrics().in_flight(), 0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        (
            started.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
    assert!(memo.store().get(&key).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn errors_reach_every_waiter_and_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let key = Key::new(1, "fails");
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (memo, key, runs) = (memo.clone(), key.clone(), runs.clone());
            tokio::spawn(async move {
                memo.get_or_compute(key, Lookup::default(), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err::<&str, _>("model exploded")
                })
                .await
            })
        })
        .collect();
    for c in callers {
        let err = c.await.unwrap().unwrap_err();
        assert_eq!(err, Error::Compute("model exploded".into()));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(memo.pending(), 0);
    assert!(memo.store().get(&key).await.unwrap().is_none());
    let (entry, status) = memo
        .get_or_compute(
            key,
            Lookup::default(),
            counted(&runs, Duration::ZERO, "ok now"),
        )
        .await
        .unwrap();
    assert_eq!(
        (entry.value.as_ref(), status),
        (&b"ok now"[..], CacheStatus::Miss)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panic_becomes_an_error_for_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let key = Key::new(1, "panics");
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (memo, key) = (memo.clone(), key.clone());
            tokio::spawn(async move {
                memo.get_or_compute(key, Lookup::default(), || async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if true {
                        panic!("boom");
                    }
                    Ok::<&str, String>("unreachable")
                })
                .await
            })
        })
        .collect();
    for c in callers {
        match c.await.unwrap() {
            Err(Error::Compute(msg)) => assert!(msg.contains("panicked: boom"), "{msg}"),
            other => panic!("expected a computation error, got {other:?}"),
        }
    }
    assert_eq!(memo.pending(), 0);
    assert_eq!(memo.store().metrics().in_flight(), 0);
    let runs = Arc::new(AtomicUsize::new(0));
    let (entry, _) = memo
        .get_or_compute(
            key,
            Lookup::default(),
            counted(&runs, Duration::ZERO, "fine"),
        )
        .await
        .unwrap();
    assert_eq!(entry.value, "fine");
}

#[tokio::test(start_paused = true)]
async fn each_waiter_keeps_its_own_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let key = Key::new(1, "slow");
    let call = |timeout: Option<Duration>| {
        let (memo, key, work) = (
            memo.clone(),
            key.clone(),
            counted(&runs, Duration::from_millis(100), "late"),
        );
        tokio::spawn(async move {
            let lookup = Lookup {
                timeout,
                ..Lookup::default()
            };
            memo.get_or_compute(key, lookup, work).await
        })
    };
    let patient = call(Some(Duration::from_secs(1)));
    let hasty = call(Some(Duration::from_millis(10)));
    let unbounded = call(None);
    assert_eq!(
        hasty.await.unwrap().unwrap_err(),
        Error::Timeout(Duration::from_millis(10))
    );
    assert_eq!(patient.await.unwrap().unwrap().0.value, "late");
    assert_eq!(unbounded.await.unwrap().unwrap().0.value, "late");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn no_cache_recomputes_once_and_no_store_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let key = Key::new(1, "policy");
    memo.get_or_compute(
        key.clone(),
        Lookup::default(),
        counted(&runs, Duration::ZERO, "v1"),
    )
    .await
    .unwrap();
    settle(&memo).await;
    let fresh = Lookup {
        policy: Policy {
            read: false,
            write: true,
        },
        ..Lookup::default()
    };
    let both: Vec<_> = (0..2)
        .map(|_| {
            let (memo, key, work) = (
                memo.clone(),
                key.clone(),
                counted(&runs, Duration::from_millis(10), "v2"),
            );
            tokio::spawn(async move { memo.get_or_compute(key, fresh, work).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in both {
        let (entry, status) = c.await.unwrap().unwrap();
        assert_eq!(entry.value, "v2");
        statuses.push(status);
    }
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(statuses, [CacheStatus::Coalesced, CacheStatus::Miss]);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "two no-cache callers, one recomputation"
    );
    settle(&memo).await;
    let (entry, status) = memo
        .get_or_compute(key, Lookup::default(), counted(&runs, Duration::ZERO, "x"))
        .await
        .unwrap();
    assert_eq!(
        (entry.value.as_ref(), status),
        (&b"v2"[..], CacheStatus::Hit(Tier::Memory))
    );

    let transient = Key::new(1, "no-store");
    let nostore = Lookup {
        policy: Policy {
            read: true,
            write: false,
        },
        ..Lookup::default()
    };
    memo.get_or_compute(
        transient.clone(),
        nostore,
        counted(&runs, Duration::ZERO, "t"),
    )
    .await
    .unwrap();
    settle(&memo).await;
    assert!(memo.store().get(&transient).await.unwrap().is_none());
    assert_eq!(memo.store().usage().1.entries, 1);
}

/// A caller arriving just as the computation finishes must find the result
/// in flight or stored, never start a second computation. Real threads,
/// many rounds, arrival times spread around the finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_arriving_at_completion_never_recomputes() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    for round in 0..300u32 {
        let runs = Arc::new(AtomicUsize::new(0));
        let key = Key::new(1, format!("race-{round}"));
        let compute_time = Duration::from_micros(200);
        let first = {
            let (memo, key, work) = (memo.clone(), key.clone(), counted(&runs, compute_time, "r"));
            tokio::spawn(async move { memo.get_or_compute(key, Lookup::default(), work).await })
        };
        // Arrive somewhere between well before and well after the finish.
        let spin = Duration::from_micros(u64::from(round % 30) * 20);
        let start = std::time::Instant::now();
        while start.elapsed() < spin {
            std::hint::spin_loop();
        }
        let late = memo
            .get_or_compute(key, Lookup::default(), counted(&runs, compute_time, "r"))
            .await
            .unwrap();
        assert_eq!(late.0.value, "r");
        first.await.unwrap().unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "round {round}: computed twice"
        );
    }
}

/// A computation in flight while its model's cache is dropped: its callers
/// still get its result, but afterwards the key is a miss in both tiers.
#[tokio::test]
async fn a_result_computed_across_a_cache_drop_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let key = Key::new(3, "in-flight");
    let (started, on_start) = tokio::sync::oneshot::channel();
    let (resume, on_resume) = tokio::sync::oneshot::channel::<()>();
    let caller = tokio::spawn({
        let (memo, key) = (memo.clone(), key.clone());
        async move {
            let work = move || async move {
                started.send(()).unwrap();
                on_resume.await.unwrap();
                Ok::<_, String>("stale")
            };
            memo.get_or_compute(key, Lookup::default(), work).await
        }
    });
    on_start.await.unwrap();
    memo.store().drop_namespace(3).await.unwrap();
    resume.send(()).unwrap();
    let (entry, status) = caller.await.unwrap().unwrap();
    assert_eq!(
        (&entry.value[..], status),
        (&b"stale"[..], CacheStatus::Miss)
    );
    settle(&memo).await;
    assert!(memo.store().get_memory(&key).is_none(), "kept in memory");
    assert!(
        memo.store().get(&key).await.unwrap().is_none(),
        "kept on disk"
    );
    assert_eq!(memo.store().usage().1.entries, 0);
    // The next caller computes afresh, and that result is stored.
    let runs = Arc::new(AtomicUsize::new(0));
    let (entry, status) = memo
        .get_or_compute(
            key.clone(),
            Lookup::default(),
            counted(&runs, Duration::ZERO, "fresh"),
        )
        .await
        .unwrap();
    assert_eq!(
        (&entry.value[..], status),
        (&b"fresh"[..], CacheStatus::Miss)
    );
    settle(&memo).await;
    assert_eq!(
        memo.store().get(&key).await.unwrap().unwrap().0.value,
        "fresh"
    );
}

/// No lifetime, however long, can overflow a deadline: it saturates and
/// the result is stored and served.
#[tokio::test]
async fn a_huge_ttl_cannot_panic() {
    let dir = tempfile::tempdir().unwrap();
    let memo = memo(dir.path()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    for (i, ttl) in [Duration::MAX, Duration::from_secs(u64::MAX / 1000)]
        .into_iter()
        .enumerate()
    {
        let key = Key::new(1, format!("forever-{i}"));
        let lookup = Lookup {
            ttl: Some(ttl),
            ..Default::default()
        };
        let (entry, _) = memo
            .get_or_compute(key.clone(), lookup, counted(&runs, Duration::ZERO, "v"))
            .await
            .unwrap();
        assert!(entry.expires_at.is_some());
        settle(&memo).await;
        let (entry, _) = memo.store().get(&key).await.unwrap().unwrap();
        assert_eq!(entry.value, "v");
    }
    assert!(memo.store().clock().deadline(Duration::MAX) > memo.store().clock().now_ms());
}
