//! The write-ahead log of the real binary (ARCHITECTURE.md §3): SIGKILL at
//! random moments under 16 writers loses no acknowledged PUT or DELETE,
//! run after run on the same data dir; a log whose tail is torn
//! (truncated) or corrupt (a flipped byte) opens, with every record before
//! the damage replayed and counted, and nothing after it.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{temp_dir, ChildServer};
use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::StatusCode;

const WRITERS: usize = 16;
const RUNS: usize = 5;

fn value_for(run: usize, client: usize, n: usize) -> Vec<u8> {
    // Distinct, length-varying bytes so a torn or swapped value shows.
    let len = 1 + (run * 31 + client * 7919 + n * 104_729) % 2048;
    (0..len)
        .map(|i| (i ^ client ^ (n << 3) ^ run) as u8)
        .collect()
}

/// What a key must read back as.
#[derive(Clone)]
enum Expect {
    Value(Vec<u8>),
    Gone,
    /// A delete was in flight when the server died: either.
    Either(Vec<u8>),
}

/// What the writers were told, in order: key -> what it must hold.
type Acked = Arc<Mutex<Vec<(String, Expect)>>>;

/// One writer: PUTs new keys, and every fifth request DELETEs the key it
/// wrote four requests earlier; records each acknowledged change.
async fn write_until_killed(base: String, run: usize, client: usize, acked: Acked) {
    let http = reqwest::Client::new();
    for n in 0.. {
        let key = format!("r{run}-c{client}-{n}");
        let (request, change) = if n % 5 == 4 {
            let gone = format!("r{run}-c{client}-{}", n - 4);
            (
                http.delete(format!("{base}/v1/kv/{gone}")),
                (gone, Expect::Gone),
            )
        } else {
            let value = value_for(run, client, n);
            let put = http.put(format!("{base}/v1/kv/{key}")).body(value.clone());
            (put, (key, Expect::Value(value)))
        };
        match request.send().await {
            Ok(r) if r.status().is_success() => acked.lock().unwrap().push(change),
            Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {}
            Ok(r) => panic!("unexpected status {}", r.status()),
            Err(_) => {
                // The server is gone; an unanswered delete may have landed.
                if let (key, Expect::Gone) = change {
                    let put = value_for(run, client, n - 4);
                    acked.lock().unwrap().push((key, Expect::Either(put)));
                }
                return;
            }
        }
    }
}

/// Every acknowledged change reads back from `base`: the last value put,
/// or 404 after a delete.
async fn check_all(base: &str, acked: &[(String, Expect)]) {
    let mut last = std::collections::HashMap::new();
    for (key, value) in acked {
        last.insert(key.clone(), value.clone());
    }
    let last: Vec<_> = last.into_iter().collect();
    let http = reqwest::Client::new();
    let checks = last
        .chunks(last.len().div_ceil(WRITERS).max(1))
        .map(|part| {
            let http = http.clone();
            async move {
                for (key, value) in part {
                    let resp = http
                        .get(format!("{base}/v1/kv/{key}"))
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status();
                    let body = resp.bytes().await.unwrap();
                    match value {
                        Expect::Value(value) => {
                            assert_eq!(status, StatusCode::OK, "acknowledged {key} is missing");
                            assert_eq!(&body[..], &value[..], "{key}");
                        }
                        Expect::Gone => {
                            assert_eq!(status, StatusCode::NOT_FOUND, "deleted {key} is back")
                        }
                        Expect::Either(value) => assert!(
                            status == StatusCode::NOT_FOUND || body[..] == value[..],
                            "{key}: {status}"
                        ),
                    }
                }
            }
        });
    futures::future::join_all(checks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let seed = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = temp_dir();
    let acked: Acked = Arc::default();
    for run in 0..RUNS {
        let mut server = ChildServer::spawn(dir.path(), &[]);
        // What earlier runs acknowledged survived their kill.
        let so_far = acked.lock().unwrap().clone();
        check_all(&server.base, &so_far).await;
        let before = acked.lock().unwrap().len();
        let writers: Vec<_> = (0..WRITERS)
            .map(|client| {
                let base = server.base.clone();
                tokio::spawn(write_until_killed(base, run, client, acked.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        server.signal(libc::SIGKILL);
        server.wait();
        for w in writers {
            w.await.unwrap();
        }
        let wrote = acked.lock().unwrap().len() - before;
        eprintln!("run {run}: {wrote} changes acknowledged before the kill");
        assert!(wrote > 0, "run {run}: nothing was acknowledged");
    }
    let server = ChildServer::spawn(dir.path(), &[]);
    let all = acked.lock().unwrap().clone();
    check_all(&server.base, &all).await;
    let log = server.stop_and_collect();
    // The clean stop checkpointed: the next open replays nothing.
    let server = ChildServer::spawn(dir.path(), &[]);
    // Serving: past the open, and its SIGTERM handler is in place.
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(replayed(&server.stop_and_collect()), None, "{log:?}");
}

/// `groups=N` of the "replayed the write-ahead log" line, if one was logged.
fn replayed(log: &[String]) -> Option<u64> {
    let line = log
        .iter()
        .find(|l| l.contains("replayed the write-ahead log"))?;
    let at = line.find("groups=")? + "groups=".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

const KEYS: usize = 40;

/// A data dir whose log holds `KEYS` acknowledged PUTs (one record each:
/// one client, one write at a time) that redb has not made durable: the
/// server was killed before any checkpoint.
async fn killed_with_a_full_log() -> tempfile::TempDir {
    let dir = temp_dir();
    let mut server = ChildServer::spawn(dir.path(), &[]);
    let http = reqwest::Client::new();
    for i in 0..KEYS {
        let url = server.url(&format!("/v1/kv/k{i}"));
        let resp = http.put(url).body(format!("value {i}")).send().await;
        assert_eq!(resp.unwrap().status(), StatusCode::NO_CONTENT);
    }
    server.signal(libc::SIGKILL);
    server.wait();
    dir
}

/// The one log segment of `dir`, and where each of its records ends.
fn segment(dir: &Path) -> (PathBuf, Vec<u64>) {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let path = segments.pop().expect("a log segment");
    let bytes = std::fs::read(&path).unwrap();
    let mut ends = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        // length (u32 LE) | crc32c (u32 LE) | payload
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        ends.push(at as u64);
    }
    assert_eq!(ends.len(), KEYS, "one record per acknowledged PUT");
    (path, ends)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Open a copy of `dir` damaged by `damage` (given the segment and its
/// record ends, it returns how many records stay intact): exactly those
/// keys are there, and the log line counts them.
async fn open_damaged(dir: &Path, damage: impl FnOnce(&Path, &[u64]) -> usize) {
    let copy = temp_dir();
    copy_dir(dir, copy.path());
    let (path, ends) = segment(copy.path());
    let intact = damage(&path, &ends);
    let server = ChildServer::spawn(copy.path(), &[]);
    let http = reqwest::Client::new();
    for i in 0..KEYS {
        let resp = http
            .get(server.url(&format!("/v1/kv/k{i}")))
            .send()
            .await
            .unwrap();
        if i < intact {
            assert_eq!(resp.status(), StatusCode::OK, "k{i} (of {intact} intact)");
            assert_eq!(resp.text().await.unwrap(), format!("value {i}"));
        } else {
            assert_eq!(
                resp.status(),
                StatusCode::NOT_FOUND,
                "k{i} (of {intact} intact)"
            );
        }
    }
    let log = server.stop_and_collect();
    assert_eq!(replayed(&log).unwrap_or(0), intact as u64, "{log:?}");
}

#[tokio::test]
async fn a_truncated_log_replays_every_whole_record_before_the_cut() {
    let dir = killed_with_a_full_log().await;
    let mut rng = StdRng::seed_from_u64(rand::rng().random());
    let len = *segment(dir.path()).1.last().unwrap();
    // The whole log, an empty one, and cuts at random offsets.
    let cuts = [len, 0]
        .into_iter()
        .chain((0..4).map(|_| rng.random_range(1..len)));
    for cut in cuts {
        open_damaged(dir.path(), |path, ends| {
            let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            file.set_len(cut).unwrap();
            ends.iter().take_while(|end| **end <= cut).count()
        })
        .await;
    }
}

#[tokio::test]
async fn a_corrupt_record_ends_the_replay_before_it() {
    let dir = killed_with_a_full_log().await;
    let mut rng = StdRng::seed_from_u64(rand::rng().random());
    for _ in 0..4 {
        // A byte of the last quarter of the log: header or payload.
        let flip = |path: &Path, ends: &[u64]| {
            let mut bytes = std::fs::read(path).unwrap();
            let len = bytes.len() as u64;
            let at = rng.random_range(len * 3 / 4..len);
            bytes[at as usize] ^= 1 << rng.random_range(0..8);
            std::fs::write(path, bytes).unwrap();
            ends.iter().take_while(|end| **end <= at).count()
        };
        open_damaged(dir.path(), flip).await;
    }
}
