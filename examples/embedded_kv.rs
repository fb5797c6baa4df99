//! Use the two-tier cache in-process, without HTTP.
//!
//! Run: `cargo run --example embedded_kv`

use std::time::Duration;

use infercache::{Entry, Key, Store, StoreOptions};

#[tokio::main]
async fn main() -> infercache::Result<()> {
    let dir = std::env::temp_dir().join("infercache-embedded-example");
    let store = Store::open(StoreOptions {
        dir: dir.clone(),
        memory_capacity: 16 << 20,
        disk_capacity: 256 << 20,
        ..StoreOptions::default()
    })
    .await?;

    // `put` returns once the entry is durable on disk.
    let key = Key::new(infercache::store::KV_NAMESPACE, "greeting");
    store.put(key.clone(), Entry::new("hello, cache")).await?;

    // An entry with a deadline (absolute, in the store clock's milliseconds).
    let ttl = Duration::from_secs(60).as_millis() as u64;
    let short = Entry {
        expires_at: Some(store.clock().now_ms() + ttl),
        ..Entry::new("gone in a minute")
    };
    store.put(Key::new(0, "short-lived"), short).await?;

    if let Some((entry, tier)) = store.get(&key).await? {
        println!(
            "{} (from {})",
            String::from_utf8_lossy(&entry.value),
            tier.as_str()
        );
    }
    store.delete(key.clone()).await?;
    assert!(store.get(&key).await?.is_none());

    let (memory, disk) = store.usage();
    println!("memory: {memory:?}, disk: {disk:?} in {}", dir.display());
    // Flush the writer before exit; redb closes when the store is dropped.
    store.close().await;
    Ok(())
}
