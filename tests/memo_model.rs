//! Model-based property test of the memoizer: random callers, cancellations,
//! deadlines and computation outcomes against a simple model of what must
//! happen. Paused tokio time makes every interleaving reproducible.
//!
//! Model, per key (all callers arrive at t=0; the computation takes 100 ms;
//! cancellations and deadlines fall before that):
//! - exactly one computation starts in a generation;
//! - it completes iff some caller stays to the end; those callers get its
//!   result (value, or an error for a failure or a panic);
//! - a timed-out caller gets `Timeout`, a cancelled one nothing;
//! - at quiescence the in-flight map is empty;
//! - next generation: a stored success is a hit (no computation); anything
//!   else computes again, once.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use infercache::{CacheStatus, Error, Key, Lookup, Memo, Store, StoreOptions};
use proptest::prelude::*;

const COMPUTE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Value,
    Fail,
    Panic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Stays,
    CancelledAt(u64),
    TimesOutAt(u64),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Value),
        Just(Outcome::Fail),
        Just(Outcome::Panic)
    ]
}

fn caller() -> impl Strategy<Value = Caller> {
    prop_oneof![
        2 => Just(Caller::Stays),
        1 => (1u64..90).prop_map(Caller::CancelledAt),
        1 => (1u64..90).prop_map(Caller::TimesOutAt),
    ]
}

/// (outcome, callers) for up to four keys.
fn scenario() -> impl Strategy<Value = Vec<(Outcome, Vec<Caller>)>> {
    prop::collection::vec((outcome(), prop::collection::vec(caller(), 1..12)), 1..5)
}

type Counters = (Arc<AtomicUsize>, Arc<AtomicUsize>);

fn computation(
    outcome: Outcome,
    (started, finished): Counters,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>
{
    move || {
        Box::pin(async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(COMPUTE).await;
            finished.fetch_add(1, Ordering::SeqCst);
            match outcome {
                Outcome::Value => Ok("value".to_string()),
                Outcome::Fail => Err("failed".to_string()),
                Outcome::Panic => panic!("panicked on purpose"),
            }
        })
    }
}

async fn run_scenario(keys: Vec<(Outcome, Vec<Caller>)>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .await
    .unwrap();
    let memo = Memo::new(store);
    let mut counters: HashMap<usize, Counters> = HashMap::new();
    let mut tasks = Vec::new();
    for (k, (outcome, callers)) in keys.iter().enumerate() {
        let c = counters.entry(k).or_default().clone();
        for caller in callers {
            let (memo, work) = (memo.clone(), computation(*outcome, c.clone()));
            let lookup = Lookup {
                timeout: match caller {
                    Caller::TimesOutAt(ms) => Some(Duration::from_millis(*ms)),
                    _ => None,
                },
                ..Lookup::default()
            };
            let task = tokio::spawn(async move {
                memo.get_or_compute(Key::new(1, format!("k{k}")), lookup, work)
                    .await
            });
            if let Caller::CancelledAt(ms) = *caller {
                let abort = task.abort_handle();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    abort.abort();
                });
            }
            tasks.push((k, *caller, task));
        }
    }
    for (k, caller, task) in tasks {
        let outcome = keys[k].0;
        let result = task.await;
        match caller {
            Caller::CancelledAt(_) => assert!(result.unwrap_err().is_cancelled()),
            Caller::TimesOutAt(ms) => {
                assert_eq!(
                    result.unwrap().unwrap_err(),
                    Error::Timeout(Duration::from_millis(ms))
                )
            }
            Caller::Stays => match (outcome, result.unwrap()) {
                (Outcome::Value, Ok((entry, _))) => assert_eq!(entry.value, "value"),
                (Outcome::Fail, Err(Error::Compute(m))) => assert_eq!(m, "failed"),
                (Outcome::Panic, Err(Error::Compute(m))) => assert!(m.contains("panicked"), "{m}"),
                (o, r) => panic!("key {k} ({o:?}): unexpected {r:?}"),
            },
        }
    }
    // Let landed results finish their durable writes.
    for _ in 0..1000 {
        if memo.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        memo.pending(),
        0,
        "the in-flight map is empty at quiescence"
    );
    assert_eq!(memo.store().metrics().in_flight(), 0);

    for (k, (outcome, callers)) in keys.iter().enumerate() {
        let (started, finished) = &counters[&k];
        let stayed = callers.contains(&Caller::Stays);
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "key {k}: one computation"
        );
        assert_eq!(
            finished.load(Ordering::SeqCst),
            usize::from(stayed),
            "key {k}"
        );
        // Next generation.
        let again = memo
            .get_or_compute(
                Key::new(1, format!("k{k}")),
                Lookup::default(),
                computation(Outcome::Value, (started.clone(), finished.clone())),
            )
            .await
            .unwrap();
        let was_stored = stayed && *outcome == Outcome::Value;
        assert_eq!(
            matches!(again.1, CacheStatus::Hit(_)),
            was_stored,
            "key {k}"
        );
        assert_eq!(started.load(Ordering::SeqCst), 1 + usize::from(!was_stored));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memoizer_matches_its_model(keys in scenario()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run_scenario(keys));
    }
}
