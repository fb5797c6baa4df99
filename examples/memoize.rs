//! Memoize an expensive async function in-process.
//!
//! Eight concurrent callers ask for the same slow result: it is computed
//! once, the others wait on it (coalesced), and later calls are hits, even
//! after a restart, because the result is on disk.
//!
//! Run: `cargo run --example memoize`

use std::time::{Duration, Instant};

use infercache::{key::KeyBuilder, Lookup, Memo, Store, StoreOptions};

/// Stand-in for a model call: slow, deterministic.
async fn expensive_square(n: u64) -> Result<Vec<u8>, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((n * n).to_string().into_bytes())
}

#[tokio::main]
async fn main() -> infercache::Result<()> {
    let store = Store::open(StoreOptions {
        dir: std::env::temp_dir().join("infercache-memoize-example"),
        ..StoreOptions::default()
    })
    .await?;
    let memo = Memo::new(store);

    // Keys say everything that determines the result.
    let key = {
        let mut k = KeyBuilder::new("square", 1, "example", &[0; 32]);
        k.u64(12);
        k.finish()
    };

    let started = Instant::now();
    let callers = (0..8).map(|_| {
        let (memo, key) = (memo.clone(), key.clone());
        tokio::spawn(async move {
            memo.get_or_compute(key, Lookup::default(), || expensive_square(12))
                .await
        })
    });
    for caller in callers {
        let (entry, status) = caller.await.expect("caller task")?;
        println!(
            "{} -> {:?} after {:?}",
            String::from_utf8_lossy(&entry.value),
            status,
            started.elapsed()
        );
    }
    let (_, status) = memo
        .get_or_compute(key, Lookup::default(), || expensive_square(12))
        .await?;
    println!("once more: {status:?}");
    memo.store().close().await;
    Ok(())
}
