//! TTL in the library with tokio's paused clock: no sleeping.

use std::time::Duration;

use infercache::{Entry, Key, Store, StoreOptions, Tier};

fn options(dir: &std::path::Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        sweep_interval: Duration::from_secs(60),
        ..Default::default()
    }
}

#[tokio::test]
async fn expired_entries_are_not_served_from_either_tier_and_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    tokio::time::pause();
    let store = Store::open(options(dir.path())).await.unwrap();
    let now = store.clock().now_ms();
    let key = Key::new(0, b"ttl");
    let entry = Entry {
        expires_at: Some(now + 5_000),
        ..Entry::new("v")
    };
    store.put(key.clone(), entry).await.unwrap();
    store
        .put(Key::new(0, b"forever"), Entry::new("f"))
        .await
        .unwrap();

    // redb takes a write just after it is acknowledged.
    for _ in 0..100 {
        if store.usage().1.entries == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    tokio::time::advance(Duration::from_millis(4_900)).await;
    assert_eq!(store.get(&key).await.unwrap().unwrap().1, Tier::Memory);

    tokio::time::advance(Duration::from_millis(200)).await;
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "expired in memory"
    );
    // Still on disk until swept, but never served from there either.
    assert_eq!(store.usage().1.entries, 2);
    assert!(store.get(&key).await.unwrap().is_none(), "expired on disk");

    // The sweeper runs every 60 s (of paused time) and removes it.
    tokio::time::advance(Duration::from_secs(61)).await;
    for _ in 0..100 {
        if store.usage().1.entries == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.usage().1.entries, 1);
    assert!(store.get(&Key::new(0, b"forever")).await.unwrap().is_some());
    store.close().await;
}
