//! The shared tier (issue #12) against real `redis-server` processes on
//! 127.0.0.1, started and stopped by the tests (`common::redis`).

mod common;

use std::time::{Duration, Instant};

use common::{
    infer_mlp, metric,
    redis::{Cluster, Redis},
    temp_dir, ChildServer, TestServer,
};

/// The harness itself: a fresh server answers, a killed one does not, a
/// restarted one answers again on the same port.
#[test]
fn redis_harness_starts_kills_and_restarts() {
    let mut redis = Redis::start();
    assert_eq!(redis.cli(&["SET", "k", "v"]).as_deref(), Some("OK"));
    assert_eq!(redis.cli(&["GET", "k"]).as_deref(), Some("v"));
    redis.kill();
    assert_eq!(redis.cli(&["PING"]), None);
    redis.restart();
    assert_eq!(
        redis.cli(&["GET", "k"]).as_deref(),
        Some(""),
        "no persistence"
    );
}

/// A server with its own empty data dir, sharing through `redis`.
async fn server(redis: &Redis, dir: &tempfile::TempDir) -> TestServer {
    on(redis.url(), false, dir).await
}

/// A server with its own empty data dir, sharing through `url`.
async fn on(url: String, cluster: bool, dir: &tempfile::TempDir) -> TestServer {
    on_with(url, cluster, dir, |_| {}).await
}

/// [`on`], with more settings.
async fn on_with(
    url: String,
    cluster: bool,
    dir: &tempfile::TempDir,
    tweak: impl FnOnce(&mut infercache::ServeArgs),
) -> TestServer {
    TestServer::start(dir.path(), |a| {
        a.shared_url = Some(url.into());
        a.shared_cluster = Some(cluster);
        a.models = vec![common::model("mlp", "mlp")];
        tweak(a);
    })
    .await
}

/// `GET /v1/kv/KEY`: (status, X-Cache-Tier, body).
async fn kv_get(server: &TestServer, key: &str) -> (u16, String, Vec<u8>) {
    let resp = server
        .client
        .get(server.url(&format!("/v1/kv/{key}")))
        .send()
        .await
        .unwrap();
    let tier = resp
        .headers()
        .get("x-cache-tier")
        .map(|t| t.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        resp.status().as_u16(),
        tier,
        resp.bytes().await.unwrap().to_vec(),
    )
}

async fn kv_put(server: &TestServer, key: &str, value: &'static [u8]) -> u16 {
    let url = server.url(&format!("/v1/kv/{key}"));
    let resp = server.client.put(url).body(value).send().await.unwrap();
    resp.status().as_u16()
}

/// The status of `DELETE path` on `server`.
async fn delete(server: &TestServer, path: &str) -> u16 {
    let resp = server.client.delete(server.url(path)).send().await.unwrap();
    resp.status().as_u16()
}

/// The Redis key of KV key `key` (pinned: `memo/shared/wire.rs`).
fn redis_kv_key(key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("ic1:{{@kv:{hex}}}:g0")
}

#[tokio::test]
async fn a_put_on_one_server_is_a_shared_hit_on_another() {
    let redis = Redis::start();
    let (da, db) = (temp_dir(), temp_dir());
    let (a, b) = (server(&redis, &da).await, server(&redis, &db).await);
    subscribed(&redis, 2).await;
    within_a_second("healthz says up before any request", || async {
        b.get_json("/healthz").await["shared"] == "up"
    })
    .await;
    assert_eq!(kv_put(&a, "greeting", b"hello fleet").await, 204);
    let (status, tier, body) = kv_get(&b, "greeting").await;
    assert_eq!(
        (status, tier.as_str(), &body[..]),
        (200, "shared", &b"hello fleet"[..])
    );
    // Copied into b's local tiers: the next read is local.
    assert_eq!(kv_get(&b, "greeting").await.1, "memory");
    let hits = "infercache_cache_hits_total{tier=\"shared\"}";
    assert_eq!(metric(&b.client, &b.base, hits).await, 1.0);
    let stats = b.get_json("/v1/stats").await;
    assert_eq!(stats["shared"]["up"], true, "{stats}");
    assert_eq!(stats["shared"]["gets"]["hit"], 1, "{stats}");
    let health = b.get_json("/healthz").await;
    assert_eq!(health["shared"], "up", "{health}");
    a.stop().await;
    b.stop().await;
}

/// A shared hit costs one Redis round trip: one `GET` (INFO commandstats).
#[tokio::test]
async fn a_shared_hit_is_one_redis_command() {
    let redis = Redis::start();
    let (da, db) = (temp_dir(), temp_dir());
    let (a, b) = (server(&redis, &da).await, server(&redis, &db).await);
    subscribed(&redis, 2).await;
    assert_eq!(kv_put(&a, "once", b"one round trip").await, 204);
    redis.cli(&["CONFIG", "RESETSTAT"]).unwrap();
    assert_eq!(kv_get(&b, "once").await.1, "shared");
    let stats = redis.cli(&["INFO", "commandstats"]).unwrap();
    let commands: Vec<&str> = stats
        .lines()
        .filter(|l| {
            l.starts_with("cmdstat_")
                && !l.contains("cmdstat_info")
                && !l.contains("cmdstat_config")
        })
        .collect();
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert!(
        commands[0].starts_with("cmdstat_get:calls=1,"),
        "{commands:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_computed_result_on_one_server_is_a_hit_on_another() {
    let redis = Redis::start();
    let (da, db) = (temp_dir(), temp_dir());
    let (a, b) = (server(&redis, &da).await, server(&redis, &db).await);
    let rows = vec![vec![0.25f32; 16], vec![-1.5f32; 16]];
    let (status, computed) = infer_mlp(&a, &rows).await;
    assert_eq!(status, "miss");
    written(&a, 2).await;
    let (status, shared) = infer_mlp(&b, &rows).await;
    assert_eq!((status.as_str(), &shared), ("hit", &computed));
    let runs = "infercache_model_runs_total{model=\"mlp\"}";
    assert_eq!(
        metric(&b.client, &b.base, runs).await,
        0.0,
        "b never ran the model"
    );
    let hits = "infercache_cache_hits_total{tier=\"shared\"}";
    assert_eq!(metric(&b.client, &b.base, hits).await, 2.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_corrupted_value_in_redis_is_a_miss() {
    let redis = Redis::start();
    let (da, db) = (temp_dir(), temp_dir());
    let a = server(&redis, &da).await;
    assert_eq!(kv_put(&a, "k", b"the real value").await, 204);
    let stored = redis.get(&redis_kv_key("k")).expect("written by the PUT");
    assert!(stored.ends_with(b"the real value"));
    // One bit of the value flipped, the bare value, a cut header, nothing.
    let mut flipped = stored.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let cut = stored[..10].to_vec();
    for forged in [flipped, b"the real value".to_vec(), cut, Vec::new()] {
        redis.set(&redis_kv_key("k"), &forged);
        let b = server(&redis, &db).await;
        let (status, _, body) = kv_get(&b, "k").await;
        let answered = String::from_utf8_lossy(&body);
        assert_eq!(status, 404, "{forged:?} answered {answered:?}");
        b.stop().await;
    }
    a.stop().await;
}

/// Wait until `server` wrote `n` values to Redis (computed results are
/// written through a queue).
async fn written(server: &TestServer, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get_json("/v1/stats").await["shared"]["sets"]["ok"].as_u64() != Some(n) {
        assert!(Instant::now() < deadline, "results not written to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `n` servers listen for announcements.
async fn subscribed(redis: &Redis, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cli(&["PUBSUB", "NUMSUB", "ic1:invalidate"]) != Some(format!("ic1:invalidate\n{n}"))
    {
        assert!(Instant::now() < deadline, "servers did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `check` every 20 ms until it holds; panics after 1 s.
async fn within_a_second<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Entries in a server's memory tier.
async fn local(server: &TestServer) -> Option<u64> {
    server.get_json("/v1/stats").await["memory"]["entries"].as_u64()
}

/// Three servers of one fleet; `a` first.
async fn fleet_of_three(redis: &Redis, dirs: &[tempfile::TempDir; 3]) -> [TestServer; 3] {
    let fleet = [
        server(redis, &dirs[0]).await,
        server(redis, &dirs[1]).await,
        server(redis, &dirs[2]).await,
    ];
    subscribed(redis, 3).await;
    fleet
}

#[tokio::test]
async fn a_delete_reaches_every_server_within_a_second() {
    let redis = Redis::start();
    let dirs = [temp_dir(), temp_dir(), temp_dir()];
    let [a, b, c] = fleet_of_three(&redis, &dirs).await;
    assert_eq!(kv_put(&a, "gone", b"soon").await, 204);
    for other in [&b, &c] {
        assert_eq!(kv_get(other, "gone").await.1, "shared");
        assert_eq!(kv_get(other, "gone").await.1, "memory", "a local copy");
    }
    assert_eq!(delete(&a, "/v1/kv/gone").await, 204);
    assert_eq!(
        redis.cli(&["EXISTS", &redis_kv_key("gone")]).as_deref(),
        Some("0")
    );
    within_a_second("b and c drop their copies", || async {
        kv_get(&b, "gone").await.0 == 404 && kv_get(&c, "gone").await.0 == 404
    })
    .await;
    for server in [a, b, c] {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_model_drop_reaches_every_server_within_a_second() {
    let redis = Redis::start();
    let dirs = [temp_dir(), temp_dir(), temp_dir()];
    let [a, b, c] = fleet_of_three(&redis, &dirs).await;
    let rows = vec![vec![0.5f32; 16]];
    assert_eq!(infer_mlp(&a, &rows).await.0, "miss");
    assert_eq!(kv_put(&a, "sync", b"after the write-back").await, 204);
    for other in [&b, &c] {
        within_a_second("the others read a's result", || async {
            infer_mlp(other, &rows).await.0 == "hit"
        })
        .await;
    }
    // b and c now hold the result locally, and the whole answer of the
    // request they read it with as a full hit (nothing else).
    assert_eq!((local(&b).await, local(&c).await), (Some(2), Some(2)));
    assert_eq!(delete(&a, "/v1/models/mlp/cache").await, 200);
    assert_eq!(redis.cli(&["GET", "ic1:gen:{mlp}"]).as_deref(), Some("1"));
    // From memory (answers too) and, once the drop commits, from disk.
    let on_disk = |s: &TestServer| {
        let s = s.client.get(s.url("/v1/stats"));
        async move {
            let stats: serde_json::Value = s.send().await.unwrap().json().await.unwrap();
            stats["disk"]["entries"].as_u64()
        }
    };
    within_a_second("b and c drop the model's results", || async {
        (local(&b).await, local(&c).await) == (Some(0), Some(0))
            && (on_disk(&b).await, on_disk(&c).await) == (Some(0), Some(0))
    })
    .await;
    // Dropped everywhere: b computes it again, once.
    assert_eq!(infer_mlp(&b, &rows).await.0, "miss", "b after the drop");
    let runs = "infercache_model_runs_total{model=\"mlp\"}";
    assert_eq!(metric(&b.client, &b.base, runs).await, 1.0);
    assert_eq!(infer_mlp(&b, &rows).await.0, "hit");
    for server in [a, b, c] {
        server.stop().await;
    }
}

/// `shared_ttl` bounds an entry's life in Redis: every write sets it.
#[tokio::test]
async fn shared_ttl_expires_entries_in_redis() {
    let redis = Redis::start();
    let dir = temp_dir();
    let a = TestServer::start(dir.path(), |a| {
        a.shared_url = Some(redis.url().into());
        a.shared_ttl = Some("60s".parse().unwrap());
    })
    .await;
    assert_eq!(kv_put(&a, "short", b"lived").await, 204);
    let pttl: i64 = redis
        .cli(&["PTTL", &redis_kv_key("short")])
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60_000).contains(&pttl), "PTTL {pttl} ms");
    a.stop().await;
}

/// A removal Redis did not take (paused past `shared_timeout`) still
/// answers 204 and is never undone by the stale copy in Redis: the server
/// removes it before using the key or model again.
#[tokio::test]
async fn a_removal_redis_missed_is_not_undone() {
    let redis = Redis::start();
    let dir = temp_dir();
    let a = server(&redis, &dir).await;
    assert_eq!(kv_put(&a, "k", b"old").await, 204);
    let rows = vec![vec![3.0f32; 16]];
    assert_eq!(infer_mlp(&a, &rows).await.0, "miss");
    written(&a, 2).await;
    redis.cli(&["CLIENT", "PAUSE", "500", "ALL"]).unwrap();
    assert_eq!(delete(&a, "/v1/kv/k").await, 204);
    assert_eq!(delete(&a, "/v1/models/mlp/cache").await, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(kv_get(&a, "k").await.0, 404);
    assert_eq!(
        redis.cli(&["EXISTS", &redis_kv_key("k")]).as_deref(),
        Some("0")
    );
    assert_eq!(infer_mlp(&a, &rows).await.0, "miss", "computed again");
    // The paused INCR may still run once Redis resumes: at least one bump.
    let generation: u64 = redis
        .cli(&["GET", "ic1:gen:{mlp}"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(generation >= 1);
    a.stop().await;
}

/// The sum of one series over `fleet`.
async fn fleet_total(fleet: &[TestServer], series: &str) -> f64 {
    let mut total = 0.0;
    for server in fleet {
        total += metric(&server.client, &server.base, series).await;
    }
    total
}

/// Concurrent identical requests spread over three servers run the model
/// once in total (a fleet-wide lease), and a fresh fourth server with an
/// empty data dir finds the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_computes_each_result_once() {
    let redis = Redis::start();
    let dirs: Vec<_> = (0..4).map(|_| temp_dir()).collect();
    let mut fleet = Vec::new();
    for dir in &dirs[..3] {
        fleet.push(server(&redis, dir).await);
    }
    subscribed(&redis, 3).await;
    let runs = "infercache_model_runs_total{model=\"mlp\"}";
    for round in 0..5 {
        let rows = vec![vec![round as f32 + 0.125; 16]];
        let calls = (0..12).map(|i| infer_mlp(&fleet[i % 3], &rows));
        let answers = futures::future::join_all(calls).await;
        assert!(answers.windows(2).all(|w| w[0].1 == w[1].1), "one result");
        // The one computation is the only miss: a result that came
        // through another server's lease is coalesced.
        let misses = answers.iter().filter(|a| a.0 == "miss").count();
        assert_eq!(misses, 1, "round {round}: {answers:?}");
        let mut total = 0.0;
        for server in &fleet {
            total += metric(&server.client, &server.base, runs).await;
        }
        assert_eq!(
            total,
            round as f64 + 1.0,
            "round {round}: one run fleet-wide"
        );
    }
    // The others did wait on a lease (else the test proves nothing).
    let waited = "infercache_shared_ops_total{op=\"lease\",result=\"waited\"}";
    let waits = fleet_total(&fleet, waited).await;
    assert!(waits > 0.0, "no server waited on another's lease");
    let fourth = server(&redis, &dirs[3]).await;
    let rows = vec![vec![4.125f32; 16]];
    assert_eq!(infer_mlp(&fourth, &rows).await.0, "hit");
    assert_eq!(metric(&fourth.client, &fourth.base, runs).await, 0.0);
    for server in fleet {
        server.stop().await;
    }
    fourth.stop().await;
}

/// A lease whose holder died (never renewed, never released) holds the
/// others back only until it expires; then one of them computes.
#[tokio::test]
async fn a_dead_holders_lease_expires_and_another_computes() {
    let redis = Redis::start();
    let dir = temp_dir();
    let a = server(&redis, &dir).await;
    let rows = vec![vec![7.0f32; 16]];
    assert_eq!(infer_mlp(&a, &rows).await.0, "miss");
    written(&a, 1).await;
    // Test-only: find the result's key, to forge its lease in the next
    // generation.
    let stored = redis.cli(&["KEYS", "ic1:{mlp:*"]).unwrap();
    let lease = stored.replace(":g0", ":g1:lease");
    assert_eq!(delete(&a, "/v1/models/mlp/cache").await, 200);
    redis
        .cli(&["SET", &lease, "dead-holder", "PX", "1500"])
        .unwrap();
    let started = Instant::now();
    assert_eq!(infer_mlp(&a, &rows).await.0, "miss");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "did not wait: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    a.stop().await;
}

/// A Redis Cluster: KV values and computed results are shared, whichever
/// node their slot is on.
#[tokio::test]
async fn a_redis_cluster_is_shared_too() {
    let cluster = Cluster::start();
    let (da, db) = (temp_dir(), temp_dir());
    let a = on(cluster.urls(), true, &da).await;
    let b = on(cluster.urls(), true, &db).await;
    for i in 0..10 {
        let key = format!("key{i}");
        assert_eq!(kv_put(&a, &key, b"clustered").await, 204);
        let (status, tier, body) = kv_get(&b, &key).await;
        assert_eq!(
            (status, tier.as_str(), &body[..]),
            (200, "shared", &b"clustered"[..])
        );
    }
    let rows = vec![vec![2.0f32; 16]];
    let (_, computed) = infer_mlp(&a, &rows).await;
    written(&a, 11).await;
    assert_eq!(infer_mlp(&b, &rows).await, ("hit".to_string(), computed));
    a.stop().await;
    b.stop().await;
}

/// Redis killed under load: no 5xx, each request at most about
/// `shared_timeout` slower; restarted: sharing resumes within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_costs_no_errors_and_sharing_resumes() {
    let mut redis = Redis::start();
    let (da, db) = (temp_dir(), temp_dir());
    let (a, b) = (server(&redis, &da).await, server(&redis, &db).await);
    assert_eq!(kv_put(&a, "before", b"1").await, 204);
    redis.kill();
    for i in 0..40 {
        let key = format!("during{i}");
        let started = Instant::now();
        assert_eq!(kv_put(&a, &key, b"2").await, 204);
        assert_eq!(kv_get(&a, &key).await.0, 200);
        assert_eq!(kv_get(&b, &key).await.0, 404, "b cannot see it: no 5xx");
        // Three calls, each bounded by shared_timeout (100ms), plus slack.
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(600),
            "request {i} took {took:?}"
        );
    }
    let health = b.get_json("/healthz").await;
    assert_eq!(health["shared"], "down", "{health}");
    let resp = b.client.get(b.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = kv_put(&a, "after", b"3").await;
        if kv_get(&b, "after").await.1 == "shared" {
            break;
        }
        assert!(Instant::now() < deadline, "sharing did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.get_json("/healthz").await["shared"], "up");
    a.stop().await;
    b.stop().await;
}

/// A paused Redis (`DEBUG SLEEP`): requests go on from the local tiers,
/// each at most about `shared_timeout` slower, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_costs_at_most_the_timeout() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let (da, db) = (temp_dir(), temp_dir());
    let (a, b) = (server(&redis, &da).await, server(&redis, &db).await);
    assert_eq!(kv_put(&a, "local", b"1").await, 204);
    let port = redis.port;
    let sleeper = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "DEBUG", "SLEEP", "1.5"])
            .output()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..10 {
        let started = Instant::now();
        assert_eq!(kv_get(&a, "local").await.0, 200, "a local hit");
        assert_eq!(kv_get(&b, &format!("absent{i}")).await.0, 404);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(400),
            "request {i} took {took:?}"
        );
    }
    let slept = sleeper.join().unwrap().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&slept.stdout).trim(),
        "OK",
        "Redis did sleep"
    );
    a.stop().await;
    b.stop().await;
}

/// `rediss://` (TLS through rustls) reaches a Redis that only speaks TLS
/// on that port; the test's self-signed certificate is trusted through
/// `SSL_CERT_FILE` (read by rustls-native-certs; no other test uses TLS).
#[tokio::test]
async fn a_tls_url_works() {
    let certs = temp_dir();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(made.status.success(), "openssl req failed");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let redis = Redis::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
    ]);
    // SAFETY (edition 2021: safe): read only by the TLS connections below.
    std::env::set_var("SSL_CERT_FILE", cert);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    shares_through(url, b"over TLS").await;
    drop(redis);
}

/// A value PUT on one server sharing through `url` is a shared hit on a
/// second one. The first call of each server also connects (a TLS
/// handshake, on a loaded CI machine): it gets a generous timeout.
async fn shares_through(url: String, value: &'static [u8]) {
    let (da, db) = (temp_dir(), temp_dir());
    let patient = |a: &mut infercache::ServeArgs| a.shared_timeout = Some("5s".parse().unwrap());
    let a = on_with(url.clone(), false, &da, patient).await;
    let b = on_with(url, false, &db, patient).await;
    assert_eq!(kv_put(&a, "k", value).await, 204);
    assert_eq!(kv_get(&b, "k").await.1, "shared");
    a.stop().await;
    b.stop().await;
}

/// `redis+unix://` reaches a Redis on a Unix socket.
#[tokio::test]
async fn a_unix_socket_url_works() {
    let sockets = temp_dir();
    let sock = sockets.path().join("redis.sock");
    let redis = Redis::start_with(&["--unixsocket", sock.to_str().unwrap()]);
    let url = format!("redis+unix://{}", sock.display());
    shares_through(url, b"over a socket").await;
    drop(redis);
}

/// The logged config shows the URL with its password redacted.
#[tokio::test]
async fn the_password_is_not_logged() {
    let redis = Redis::start();
    redis
        .cli(&["CONFIG", "SET", "requirepass", "hunter2"])
        .unwrap();
    let dir = temp_dir();
    let url = format!("redis://:hunter2@127.0.0.1:{}", redis.port);
    let server = ChildServer::spawn(dir.path(), &["--shared-url", &url]);
    // Answering means the signal handlers are in place.
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let log = server.stop_and_collect().join("\n");
    assert!(log.contains("shared_url"), "{log}");
    assert!(log.contains(":<redacted>@127.0.0.1"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}
