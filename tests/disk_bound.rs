//! `disk_capacity` bounds the redb file, not only the bytes charged per
//! entry: filling the tier three times over with small values leaves the
//! file (what the volume sees) within 1.2 x `disk_capacity`.

use futures::future::try_join_all;
use infercache::{Entry, Key, Store, StoreOptions};

/// 1 MiB: a realistic small tier (a sidecar's scratch volume is a few MiB
/// to GiB, and redb grows every file the same way, doubling it while it is
/// under 4 GiB), yet 3x of it is only ~13,000 puts of 100 bytes, a few
/// seconds in a debug build. It also takes the file through every doubling
/// from redb's initial size up to past the capacity.
const CAPACITY: u64 = 1 << 20;
/// Small values, where per-entry page overhead weighs most.
const VALUE: usize = 100;
/// Writes in flight together, so they share group commits as a busy
/// server's would.
const CONCURRENT: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_fills_leave_the_file_within_the_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        dir: dir.path().to_path_buf(),
        memory_capacity: 1 << 20,
        disk_capacity: CAPACITY,
        ..Default::default()
    };
    let file = dir.path().join("infercache.redb");
    let store = Store::open(options.clone()).await.unwrap();
    // 2 x 32-byte key + 19-byte header + value + 64 bytes per entry.
    let charge = 2 * 32 + 19 + VALUE as u64 + 64;
    let puts = 3 * CAPACITY / charge;
    let key = |i: u64| Key::new(0, blake3::hash(&i.to_le_bytes()).as_bytes());
    let mut largest = 0;
    for start in (0..puts).step_by(CONCURRENT) {
        let end = (start + CONCURRENT as u64).min(puts);
        try_join_all((start..end).map(|i| store.put(key(i), Entry::new(vec![i as u8; VALUE]))))
            .await
            .unwrap();
        largest = largest.max(std::fs::metadata(&file).unwrap().len());
    }
    let kept = store.usage().1.entries;
    // Closing waits for the writer, which compacts right after a commit
    // that left the file too large: the length below is the settled one.
    store.close().await;
    drop(store);
    let len = std::fs::metadata(&file).unwrap().len();
    let ratio = len as f64 / CAPACITY as f64;
    // `largest` is informative only: a commit that needs more free pages
    // than the file has makes redb double it, until the compaction that
    // follows that commit.
    eprintln!(
        "{puts} puts: file {len} B = {ratio:.2} x disk_capacity (largest seen {:.2} x), {kept} entries kept",
        largest as f64 / CAPACITY as f64,
    );
    assert!(ratio <= 1.2, "the file is {ratio:.2} x disk_capacity");
    // The newest writes are all still there, in a file that reopens.
    let store = Store::open(options).await.unwrap();
    for i in puts - 100..puts {
        let (entry, _) = store.get(&key(i)).await.unwrap().expect("kept");
        assert_eq!(entry.value, vec![i as u8; VALUE]);
    }
}
