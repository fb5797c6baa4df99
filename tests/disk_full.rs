//! A full disk (injected through the storage seam): the failing writes get
//! an error (HTTP 500), acknowledged entries stay readable, and writes work
//! again once space is back.

use std::sync::{atomic::Ordering, Arc};

use infercache::{Entry, Error, Key, Store, StoreOptions};

#[tokio::test]
async fn a_full_disk_fails_writes_and_keeps_reads() {
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
    for i in 0..100u32 {
        let (entry, _) = store
            .get(&Key::new(0, i.to_le_bytes()))
            .await
            .unwrap()
            .expect("acknowledged");
        assert_eq!(entry.value, vec![i as u8; 100]);
    }
    assert!(
        store.get(&Key::new(0, b"new")).await.unwrap().is_none(),
        "a failed write is not visible"
    );
    full.store(false, Ordering::SeqCst);
    let after = store.put(Key::new(0, b"later"), Entry::new("v")).await;
    store.close().await;
    drop(store);
    // Whatever redb decided after the I/O error, a reopen sees every
    // acknowledged entry.
    let store = Store::open(StoreOptions {
        disk_full: None,
        ..options
    })
    .await
    .unwrap();
    for i in 0..100u32 {
        assert!(store
            .get(&Key::new(0, i.to_le_bytes()))
            .await
            .unwrap()
            .is_some());
    }
    if after.is_ok() {
        assert!(store.get(&Key::new(0, b"later")).await.unwrap().is_some());
    }
    eprintln!("write after space came back: {after:?}");
}
