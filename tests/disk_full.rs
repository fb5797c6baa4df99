//! A full disk (injected through the storage seam): the failing writes get
//! an error (HTTP 500), acknowledged entries stay readable, and once space
//! is back the store reopens its database by itself: healthy again, writes
//! accepted, nothing acknowledged lost, all without a restart.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use infercache::{Entry, Error, Key, Store, StoreOptions};

#[tokio::test]
async fn a_full_disk_fails_writes_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = StoreOptions {
        dir: dir.path().to_path_buf(),
        memory_capacity: 4 << 10,
        disk_full: Some(full.clone()),
        ..Default::default()
    };
    let store = Store::open(options.clone()).await.unwrap();
    for i in 0..100u32 {
        store
            .put(Key::new(0, i.to_le_bytes()), Entry::new(vec![i as u8; 100]))
            .await
            .unwrap();
    }
    full.store(true, Ordering::SeqCst);
    let err = store
        .put(Key::new(0, b"new"), Entry::new("v"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Storage(m) if m.contains("no space left")),
        "{err}"
    );
    assert_eq!(err.status(), 500);
    assert!(!store.disk_healthy(), "/healthz reports the failing disk");
    // Reads go on, from memory and from disk.
    all_readable(&store, "while the disk is full").await;
    assert!(
        store.get(&Key::new(0, b"new")).await.unwrap().is_none(),
        "a failed write is not visible"
    );
    // Still full: writes keep being refused with an error, never a 204.
    let refused = store.put(Key::new(0, b"refused"), Entry::new("v")).await;
    assert_eq!(refused.map_err(|e| e.status().as_u16()), Err(500));
    full.store(false, Ordering::SeqCst);
    // Space is back: the writer reopens the database by itself (its first
    // attempts come 100 ms, 200 ms, ... after the failure).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !store.disk_healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk tier did not recover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
        .put(Key::new(0, b"later"), Entry::new("v"))
        .await
        .expect("writes are accepted again without a restart");
    all_readable(&store, "after the reopen").await;
    store.close().await;
    drop(store);
    // A restart sees every acknowledged entry, and nothing refused.
    let store = Store::open(StoreOptions {
        disk_full: None,
        ..options
    })
    .await
    .unwrap();
    all_readable(&store, "after a restart").await;
    assert!(store.get(&Key::new(0, b"later")).await.unwrap().is_some());
    assert!(store.get(&Key::new(0, b"new")).await.unwrap().is_none());
    assert!(store.get(&Key::new(0, b"refused")).await.unwrap().is_none());
}

/// The 100 entries written (and acknowledged) before the disk filled.
async fn all_readable(store: &Store, when: &str) {
    for i in 0..100u32 {
        let (entry, _) = store
            .get(&Key::new(0, i.to_le_bytes()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged entry {i} missing {when}"));
        assert_eq!(entry.value, vec![i as u8; 100]);
    }
}
