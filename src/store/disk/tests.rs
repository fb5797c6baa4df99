//! Unit tests of the disk tier on real redb files.

use bytes::Bytes;

use super::{tables::charge, *};

fn key(id: &str) -> Key {
    Key::new(0, id.as_bytes())
}

fn entry(value: &[u8], expires_at: Option<u64>) -> Entry {
    Entry {
        value: Bytes::copy_from_slice(value),
        content_type: Some("text/plain".into()),
        expires_at,
    }
}

#[test]
fn totals_follow_puts_overwrites_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
    let a = Op::Put {
        key: key("a"),
        entry: entry(b"1", None),
    };
    let a2 = Op::Put {
        key: key("a"),
        entry: entry(b"22", None),
    };
    disk.apply(&[&a, &a2]).unwrap();
    assert_eq!(disk.usage().0, 1);
    assert_eq!(disk.get(&key("a")).unwrap().unwrap().value, &b"22"[..]);
    let del = Op::Delete { key: key("a") };
    assert_eq!(disk.apply(&[&del, &del]).unwrap().counts, vec![1, 0]);
    assert_eq!(disk.usage(), (0, 0));
}

#[test]
fn dropping_a_namespace_leaves_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
    let ops: Vec<Op> = (0..3u32)
        .flat_map(|ns| {
            (0..5).map(move |i| Op::Put {
                key: Key::new(ns, [i]),
                entry: entry(b"v", None),
            })
        })
        .collect();
    disk.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(
        disk.apply(&[&Op::DropNamespace(1)]).unwrap().counts,
        vec![5]
    );
    assert_eq!(disk.usage().0, 10);
    assert!(disk.get(&Key::new(1, [0])).unwrap().is_none());
    assert!(disk.get(&Key::new(2, [4])).unwrap().is_some());
}

#[test]
fn namespaces_are_stable_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
    let a = disk.namespace("a").unwrap();
    let b = disk.namespace("b").unwrap();
    assert!(a != b && a != 0 && b != 0);
    drop(disk);
    let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
    assert_eq!(disk.namespace("b").unwrap(), b);
    assert_eq!(disk.namespace("a").unwrap(), a);
}

#[test]
fn expired_first_then_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let now = clock.now_ms();
    let value = vec![0u8; 1000];
    let one = charge(b"k0", HEADER + 10 + 1000);
    let disk = DiskTier::open(dir.path(), 3 * one, clock).unwrap();
    disk.target.store(3 * one, Ordering::Relaxed);
    // k0 oldest; k1 already expired; k2 live.
    let ops = [
        Op::Put {
            key: key("k0"),
            entry: entry(&value, None),
        },
        Op::Put {
            key: key("k1"),
            entry: entry(&value, Some(now - 1)),
        },
        Op::Put {
            key: key("k2"),
            entry: entry(&value, None),
        },
    ];
    disk.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
    let k3 = Op::Put {
        key: key("k3"),
        entry: entry(&value, None),
    };
    disk.apply(&[&k3]).unwrap();
    // Over capacity by one entry: the expired k1 goes, k0 stays.
    assert!(disk.get(&key("k0")).unwrap().is_some());
    assert_eq!(disk.usage().0, 3);
    let k4 = Op::Put {
        key: key("k4"),
        entry: entry(&value, None),
    };
    disk.apply(&[&k4]).unwrap();
    // Nothing expired left: the oldest written (k0) goes.
    assert!(disk.get(&key("k0")).unwrap().is_none());
    assert!(disk.get(&key("k2")).unwrap().is_some());
    assert!(disk.usage().1 <= 3 * one);
}

#[test]
fn a_commit_never_evicts_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
    let one = charge(b"k0", HEADER + 10 + 1000);
    disk.target.store(one, Ordering::Relaxed);
    let value = vec![0u8; 1000];
    let puts: Vec<Op> = ["k0", "k1", "k2"]
        .iter()
        .map(|id| Op::Put {
            key: key(id),
            entry: entry(&value, None),
        })
        .collect();
    let applied = disk.apply(&puts.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(applied.evicted, 0, "all three were written by this commit");
    assert_eq!(disk.usage().0, 3);
    // The next commit evicts them, oldest first, down to the target.
    disk.apply(&[]).unwrap();
    assert!(disk.get(&key("k0")).unwrap().is_none());
    assert!(disk.get(&key("k2")).unwrap().is_some());
}

#[test]
fn a_failed_commit_suspends_writes_until_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let full = DiskFull::default();
    let disk = DiskTier::open_with(dir.path(), 1 << 20, Clock::new(), Some(full.clone())).unwrap();
    let put = |id: &str| Op::Put {
        key: key(id),
        entry: entry(b"v", None),
    };
    disk.apply(&[&put("before")]).unwrap();
    full.store(true, Ordering::SeqCst);
    assert!(disk.apply(&[&put("lost")]).is_err());
    assert!(!disk.writable());
    let refused = disk.apply(&[&put("refused")]).unwrap_err();
    assert!(refused.to_string().contains("suspended"), "{refused}");
    let still_full = disk.recover().unwrap_err();
    assert!(
        still_full.to_string().contains("refuses writes"),
        "{still_full}"
    );
    assert!(
        disk.get(&key("before")).unwrap().is_some(),
        "the failed database still reads"
    );
    full.store(false, Ordering::SeqCst);
    disk.recover().unwrap();
    assert!(disk.writable());
    disk.apply(&[&put("after")]).unwrap();
    assert_eq!(disk.usage().0, 2);
    drop(disk);
    let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
    for (id, there) in [
        ("before", true),
        ("lost", false),
        ("refused", false),
        ("after", true),
    ] {
        assert_eq!(disk.get(&key(id)).unwrap().is_some(), there, "{id}");
    }
}

#[test]
fn the_compaction_after_a_commit_spares_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 256 << 10;
    let disk = DiskTier::open(dir.path(), capacity, Clock::new()).unwrap();
    let big = Op::Put {
        key: key("big"),
        entry: entry(&vec![7u8; 200 << 10], None),
    };
    disk.apply(&[&big]).unwrap();
    assert!(disk.over_capacity(), "{} bytes", disk.file_len());
    disk.fit().unwrap();
    assert!(
        disk.get(&key("big")).unwrap().is_some(),
        "acknowledged by the commit before"
    );
    assert!(!disk.over_capacity(), "not compacted again until it grows");
    // A later write may evict it, as any older entry.
    let small = Op::Put {
        key: key("small"),
        entry: entry(b"v", None),
    };
    assert_eq!(disk.apply(&[&small]).unwrap().evicted, 1);
    assert!(disk.get(&key("big")).unwrap().is_none());
}

/// The in-memory key index says "no" only of keys not on disk: through
/// more than one index chunk at open, writes, deletes, evictions, a failed
/// commit and a model's drop.
#[test]
fn the_key_index_never_says_no_to_a_key_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 64 << 20;
    let puts = |ns: u32, ids: std::ops::Range<u32>| -> Vec<Op> {
        ids.map(|i| Op::Put {
            key: Key::new(ns, i.to_be_bytes()),
            entry: entry(b"v", None),
        })
        .collect()
    };
    let first = puts(1, 0..(INDEX_CHUNK as u32 + 10));
    {
        let disk = DiskTier::open(dir.path(), capacity, Clock::new()).unwrap();
        disk.apply(&first.iter().collect::<Vec<_>>()).unwrap();
    }
    let full = DiskFull::default();
    let disk = std::sync::Arc::new(
        DiskTier::open_with(dir.path(), capacity, Clock::new(), Some(full.clone())).unwrap(),
    );
    let absent = Key::new(1, u32::MAX.to_be_bytes());
    assert!(disk.may_hold(&absent), "maybe, until indexed");
    DiskTier::index_keys(std::sync::Arc::downgrade(&disk)).unwrap();
    assert!(!disk.may_hold(&absent));
    let held = |i: u32| disk.may_hold(&Key::new(1, i.to_be_bytes()));
    assert!((0..INDEX_CHUNK as u32 + 10).all(held), "every key at open");
    // A failed delete leaves the key counted.
    let gone = Op::Delete {
        key: Key::new(1, 3u32.to_be_bytes()),
    };
    full.store(true, Ordering::SeqCst);
    assert!(disk.apply(&[&gone]).is_err());
    full.store(false, Ordering::SeqCst);
    disk.recover().unwrap();
    assert!(
        held(3)
            && disk
                .get(&Key::new(1, 3u32.to_be_bytes()))
                .unwrap()
                .is_some()
    );
    disk.apply(&[&gone]).unwrap();
    assert!(!held(3));
    let more = puts(2, 0..10);
    disk.apply(&more.iter().collect::<Vec<_>>()).unwrap();
    assert!(disk.may_hold(&Key::new(2, 9u32.to_be_bytes())));
    disk.apply(&[&Op::DropNamespace(2)]).unwrap();
    assert!(!disk.may_hold(&Key::new(2, 9u32.to_be_bytes())));
    assert_eq!(disk.keys.len(), INDEX_CHUNK + 10 - 1);
}

#[test]
fn logged_writes_are_readable_before_redb_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::open(dir.path(), 1 << 20, Clock::new()).unwrap();
    let put = |id: &str, value: &[u8]| Op::Put {
        key: key(id),
        entry: entry(value, None),
    };
    let (old, dropped) = (put("old", b"1"), put("dropped", b"2"));
    disk.apply(&[&old, &dropped]).unwrap();
    // Logged, not applied: a new value, a delete, then a namespace drop
    // followed by a put into that namespace.
    let first = [
        put("old", b"new"),
        Op::Delete { key: key("gone") },
        put("gone", b"3"),
    ];
    let first: Vec<&Op> = first.iter().collect();
    let logged = disk.log(&first).unwrap();
    let second = [Op::DropNamespace(0), put("after", b"4")];
    let second: Vec<&Op> = second.iter().collect();
    let later = disk.log(&second).unwrap();
    let read = |id: &str| disk.get(&key(id)).unwrap().map(|e| e.value);
    assert_eq!(disk.usage().0, 2, "redb has none of them yet");
    assert_eq!(read("old"), None, "dropped after its new value");
    assert_eq!(read("dropped"), None);
    assert_eq!(read("gone"), None);
    assert_eq!(read("after"), Some(Bytes::from_static(b"4")));
    // redb catches up in log order; every read stays the same.
    disk.apply_logged(&first, Some(logged)).unwrap();
    assert_eq!(read("old"), None);
    assert_eq!(read("after"), Some(Bytes::from_static(b"4")));
    disk.apply_logged(&second, Some(later)).unwrap();
    assert!(disk.logged(&key("after")).is_none(), "redb has it all");
    assert_eq!(disk.usage().0, 1);
    assert_eq!(read("after"), Some(Bytes::from_static(b"4")));
    assert_eq!(read("old"), None);
}
