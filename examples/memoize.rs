//! Memoize an expensive async function in-process.
//!
//! Eight concurrent callers ask for the same slow result: it is computed
//! once (one `Miss`), the seven others wait on that computation
//! (`Coalesced`), a later call is a `Hit(Memory)`, and after a restart on
//! the same directory a `Hit(Disk)`, because the result was written to disk.
//!
//! Run: `cargo run --example memoize` (`tests/examples.rs` runs it and
//! checks these lines).

use std::{
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use infercache::{key::KeyBuilder, Key, Lookup, Memo, Store, StoreOptions};

/// How many times the expensive function really ran.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Stand-in for a model call: slow, deterministic.
async fn expensive_square(n: u64) -> Result<Vec<u8>, String> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((n * n).to_string().into_bytes())
}

async fn open(dir: &Path) -> infercache::Result<Memo> {
    let store = Store::open(StoreOptions {
        dir: dir.to_path_buf(),
        ..StoreOptions::default()
    })
    .await?;
    Ok(Memo::new(store))
}

/// One call, printed as `what: value (status)`.
async fn call(memo: &Memo, key: Key, what: &str) -> infercache::Result<()> {
    let (entry, status) = memo
        .get_or_compute(key, Lookup::default(), || expensive_square(12))
        .await?;
    println!(
        "{what}: {} ({status:?})",
        String::from_utf8_lossy(&entry.value)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fresh directory, so every run starts cold.
    let dir = tempfile::tempdir()?;
    // Keys say everything that determines the result.
    let key = {
        let mut k = KeyBuilder::new("square", 1, "example", &[0; 32]);
        k.u64(12);
        k.finish()
    };
    // Two lives of a program on one directory; dropping the first runtime
    // ends every task that still holds the store, as exiting would.
    tokio::runtime::Runtime::new()?.block_on(first_run(dir.path(), key.clone()))?;
    tokio::runtime::Runtime::new()?.block_on(after_a_restart(dir.path(), key))?;
    Ok(())
}

async fn first_run(dir: &Path, key: Key) -> Result<(), Box<dyn std::error::Error>> {
    let memo = open(dir).await?;
    // Spawn all eight callers first (collecting, not a lazy iterator), so
    // they really are in flight together, then wait for each.
    let started = Instant::now();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (memo, key) = (memo.clone(), key.clone());
            tokio::spawn(async move {
                memo.get_or_compute(key, Lookup::default(), || expensive_square(12))
                    .await
            })
        })
        .collect();
    for (i, caller) in callers.into_iter().enumerate() {
        let (entry, status) = caller.await??;
        println!(
            "caller {i}: {} ({status:?})",
            String::from_utf8_lossy(&entry.value)
        );
    }
    println!(
        "computed {} time(s) for 8 callers in {:?}",
        RUNS.load(Ordering::SeqCst),
        started.elapsed()
    );
    call(&memo, key, "once more").await?;
    // Commit every queued write before the program ends.
    memo.store().close().await;
    Ok(())
}

/// The same directory opened again: the result comes from disk, not
/// computed again.
async fn after_a_restart(dir: &Path, key: Key) -> infercache::Result<()> {
    let memo = open(dir).await?;
    call(&memo, key, "after a restart").await?;
    println!("computed {} time(s) in all", RUNS.load(Ordering::SeqCst));
    memo.store().close().await;
    Ok(())
}
