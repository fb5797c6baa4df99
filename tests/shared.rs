//! The shared tier (issue #12) against real `redis-server` processes on
//! 127.0.0.1, started and stopped by the tests (`common::redis`).

mod common;

use common::redis::Redis;

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
