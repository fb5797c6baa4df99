//! The chain with a third tier behind disk (a map standing in for the
//! shared tier to come): a hit there is copied into both local tiers,
//! removals still win, and write-back and removals reach it.

use std::{collections::HashMap, sync::Arc};

use futures::{future::BoxFuture, FutureExt};
use parking_lot::Mutex;

use super::{Behind, Entry, Key, Store, StoreOptions, Tier};
use crate::{
    error::Result,
    memo::{
        tier::{Level, Pending},
        Lookup, Memo,
    },
    store::disk::Op,
};

/// A tier behind disk: a map anyone can look into.
#[derive(Clone, Default)]
struct Far(Arc<Mutex<HashMap<Key, Entry>>>);

impl Far {
    fn has(&self, key: &Key) -> bool {
        self.0.lock().contains_key(key)
    }
}

impl Level for Far {
    fn tier(&self) -> Tier {
        // Counted with disk: `Tier` names only the tiers that exist.
        Tier::Disk
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Entry>>> {
        let found = self.0.lock().get(key).cloned();
        async move { Ok(found) }.boxed()
    }

    fn promote(&self, key: &Key, entry: &Entry) {
        self.0.lock().insert(key.clone(), entry.clone());
    }

    fn put<'a>(&'a self, key: &'a Key, entry: &'a Entry) -> BoxFuture<'a, Result<()>> {
        self.promote(key, entry);
        async { Ok(()) }.boxed()
    }

    fn write_back(&self, key: &Key, entry: &Entry) -> Result<Option<Pending>> {
        self.promote(key, entry);
        Ok(None)
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        let held = self.0.lock().remove(key).is_some();
        async move { Ok(held) }.boxed()
    }

    fn drop_namespace(&self, namespace: u32) -> BoxFuture<'_, Result<u64>> {
        let mut map = self.0.lock();
        let before = map.len();
        map.retain(|key, _| key.namespace != namespace);
        let dropped = (before - map.len()) as u64;
        async move { Ok(dropped) }.boxed()
    }
}

/// A store whose chain is memory, disk, `far`.
async fn store(dir: &std::path::Path, far: &Far) -> Store {
    let options = StoreOptions {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let mut store = Store::open(options).await.unwrap();
    let inner = Arc::get_mut(&mut store.inner).expect("a store just opened");
    inner.behind.push(Behind {
        level: Box::new(far.clone()),
        tier: Tier::Disk,
        hits: inner.metrics.hits_of(Tier::Disk),
    });
    store
}

/// A store whose only entry, `k`, is `value` in the tier behind disk.
async fn far_only(value: &'static str) -> (tempfile::TempDir, Key, Far, Store) {
    let dir = tempfile::tempdir().unwrap();
    let (far, key) = (Far::default(), Key::new(1, "k"));
    far.promote(&key, &Entry::new(value));
    let store = store(dir.path(), &far).await;
    (dir, key, far, store)
}

/// Whether the disk tier holds `key`, once every write queued so far has
/// committed (the writer commits in queue order).
async fn on_disk(store: &Store, key: &Key) -> bool {
    let flush = Op::Delete {
        key: Key::new(9, "flush"),
    };
    store.inner.local.write(flush).await.unwrap();
    store.inner.local.read(key).await.unwrap().is_some()
}

#[tokio::test]
async fn a_hit_behind_disk_is_copied_into_both_local_tiers() {
    let (_dir, key, far, store) = far_only("far").await;
    let (entry, _) = store.get(&key).await.unwrap().unwrap();
    assert_eq!(entry.value, "far");
    assert_eq!(store.get_memory(&key).unwrap().value, "far");
    assert!(on_disk(&store, &key).await);
    assert!(far.has(&key), "copied, not moved");
    store.close().await;
}

#[tokio::test]
async fn a_delete_during_a_promotion_from_behind_disk_wins() {
    let (_dir, key, far, store) = far_only("old").await;
    let answered = super::races::delete_during_promotion(&store, &key, || async {
        assert!(store.get_memory(&key).is_none(), "promoted into memory");
        assert!(!on_disk(&store, &key).await, "promoted onto disk");
        assert!(!far.has(&key));
    })
    .await;
    // The read began before the delete, so it may still answer.
    assert!(answered.is_some());
    assert!(store.get(&key).await.unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn write_back_and_removals_reach_every_tier() {
    let dir = tempfile::tempdir().unwrap();
    let far = Far::default();
    let memo = Memo::new(store(dir.path(), &far).await);
    let (a, b) = (Key::new(1, "a"), Key::new(1, "b"));
    for key in [&a, &b] {
        memo.get_or_compute(key.clone(), Lookup::default(), || async {
            Ok::<_, String>("computed")
        })
        .await
        .unwrap();
    }
    while memo.pending() > 0 {
        tokio::task::yield_now().await;
    }
    let store = memo.store();
    assert!(far.has(&a) && far.has(&b));
    assert!(on_disk(store, &a).await);
    assert!(store.delete(a.clone()).await.unwrap());
    assert!(!far.has(&a));
    assert_eq!(
        store.drop_namespace(1).await.unwrap(),
        2,
        "b on disk and far"
    );
    assert!(!far.has(&b));
    assert!(store.get(&b).await.unwrap().is_none());
    store.close().await;
}
