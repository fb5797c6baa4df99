//! An acknowledged write is readable: a value whose per-entry charge
//! exceeds the disk tier is refused with 413 instead of being acknowledged
//! and then evicted by its own commit; what is acknowledged survives a
//! restart.

use infercache::{Entry, Error, Key, Store, StoreOptions};

const DISK: u64 = 64 << 10;

fn options(dir: &std::path::Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        disk_capacity: DISK,
        // As a live reload or a library user could set it, past the
        // config's own validation.
        max_value_size: DISK,
        ..Default::default()
    }
}

#[tokio::test]
async fn every_acknowledged_put_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    let mut acked = Vec::new();
    for (i, len) in [DISK, DISK - 1, DISK - 4096, DISK / 2, 100]
        .into_iter()
        .enumerate()
    {
        let key = Key::new(0, format!("k{i}"));
        match store
            .put(key.clone(), Entry::new(vec![i as u8; len as usize]))
            .await
        {
            Ok(()) => acked.push((key.clone(), len)),
            Err(e) => {
                assert!(matches!(e, Error::TooLarge { .. }), "{e}");
                assert_eq!(e.status(), 413);
            }
        }
        // Each acknowledged value is readable right after its own commit.
        if let Some((key, len)) = acked.last().filter(|(k, _)| *k == key) {
            let (entry, _) = store.get(key).await.unwrap().expect("acknowledged");
            assert_eq!(entry.value.len() as u64, *len);
        }
    }
    assert!(
        acked.iter().all(|(_, len)| *len < DISK),
        "a full-size value was acknowledged"
    );
    let last = acked.last().cloned().expect("small values are stored");
    store.close().await;
    drop(store);
    let store = Store::open(options(dir.path())).await.unwrap();
    let (entry, _) = store
        .get(&last.0)
        .await
        .unwrap()
        .expect("survives a restart");
    assert_eq!(entry.value.len() as u64, last.1);
    store.close().await;
}
