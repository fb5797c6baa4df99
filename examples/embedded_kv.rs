//! Use the two-tier cache in-process, without HTTP: `put` (durable),
//! `get` (with the tier that answered), an entry with a TTL, `delete`,
//! usage, `close`.
//!
//! Run: `cargo run --example embedded_kv` (`tests/examples.rs` runs it and
//! checks the lines it prints).

use std::time::Duration;

use infercache::{Entry, Key, Store, StoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fresh directory, so every run starts empty.
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        memory_capacity: 16 << 20,
        disk_capacity: 256 << 20,
        ..StoreOptions::default()
    })
    .await?;

    // `put` returns once the entry is durable on disk.
    let key = Key::new(infercache::KV_NAMESPACE, "greeting");
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
    let gone = store.get(&key).await?;
    println!("after delete: {:?}", gone.map(|(entry, _)| entry.value));

    let (memory, disk) = store.usage();
    println!(
        "memory: {memory:?}, disk: {disk:?} in {}",
        dir.path().display()
    );
    // Flush the writer before exit; redb closes when the store is dropped.
    store.close().await;
    Ok(())
}
