//! A promotion racing a delete, held at its seams by test gates: once the
//! delete is acknowledged, no read finds the value again.

use super::{Entry, Key, Store, StoreOptions, Tier};
use crate::store::KV_NAMESPACE;

/// A store whose only entry, `key`, is on disk but not in memory.
async fn on_disk_only(dir: &std::path::Path, key: &Key) -> Store {
    let options = || StoreOptions {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let store = Store::open(options()).await.unwrap();
    store.put(key.clone(), Entry::new("old")).await.unwrap();
    store.close().await;
    drop(store);
    Store::open(options()).await.unwrap()
}

#[tokio::test]
async fn a_promotion_publishes_a_disk_hit_when_nothing_raced_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(KV_NAMESPACE, "k");
    let store = on_disk_only(dir.path(), &key).await;
    assert!(store.get_memory(&key).is_none());
    let (_, tier) = store.get(&key).await.unwrap().unwrap();
    assert_eq!(tier, Tier::Disk);
    assert_eq!(store.get_memory(&key).unwrap().value, "old");
    store.close().await;
}

/// Read `key` while a delete of it is acknowledged between the read's
/// lookup and its promotion; `check` runs once the reader has done all it
/// will do to the tiers. Returns what the read answered.
pub(super) async fn delete_during_promotion<F: std::future::Future<Output = ()>>(
    store: &Store,
    key: &Key,
    check: impl FnOnce() -> F,
) -> Option<(Entry, Tier)> {
    let (read, after_read) = store.inner.promotion[0].arm();
    let (published, after_publish) = store.inner.promotion[1].arm();
    let reader = tokio::spawn({
        let (store, key) = (store.clone(), key.clone());
        async move { store.get(&key).await }
    });
    // The reader holds the old value.
    read.await.unwrap();
    store.delete(key.clone()).await.unwrap(); // the client's 204
    after_read.send(()).unwrap();
    published.await.unwrap();
    check().await;
    after_publish.send(()).unwrap();
    reader.await.unwrap().unwrap()
}

#[tokio::test]
async fn a_delete_acknowledged_during_a_promotion_is_never_undone() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(KV_NAMESPACE, "k");
    let store = on_disk_only(dir.path(), &key).await;
    let answered = delete_during_promotion(&store, &key, || async {
        assert!(
            store.get_memory(&key).is_none(),
            "a deleted value is readable from memory after the delete's 204"
        );
        assert!(store.get(&key).await.unwrap().is_none());
    })
    .await;
    // The read began before the delete, so it may still answer the old value.
    let (_, tier) = answered.unwrap();
    assert_eq!(tier, Tier::Disk);
    assert!(store.get(&key).await.unwrap().is_none());
    store.close().await;
}
