//! The circuit breaker of the shared tier: after [`FAILURES`] failures in
//! a row (errors or timeouts) it stops calling Redis for [`BACKOFF`], then
//! lets one call through as a probe; the probe's success closes it, its
//! failure opens it again. A dead Redis so costs a request nothing once
//! the breaker is open, and a Redis that comes back is used again within
//! about `BACKOFF` with no restart.

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Failures in a row that open the breaker.
pub(crate) const FAILURES: u32 = 3;
/// How long an open breaker refuses calls before it lets a probe through.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);

pub(crate) struct Breaker {
    start: Instant,
    failures: AtomicU32,
    /// While open: until when (ms since `start`) calls are refused.
    open_until: AtomicU64,
    /// A probe is out (only one at a time).
    probing: AtomicBool,
}

impl Breaker {
    pub(crate) fn new() -> Breaker {
        Breaker {
            start: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// May a call go to Redis now? The caller must report its outcome.
    pub(crate) fn allow(&self) -> bool {
        if self.failures.load(Ordering::Acquire) < FAILURES {
            return true;
        }
        self.now() >= self.open_until.load(Ordering::Acquire)
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    pub(crate) fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= FAILURES {
            let until = self.now() + BACKOFF.as_millis() as u64;
            self.open_until.store(until, Ordering::Release);
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Whether calls go through (closed) rather than being refused.
    pub(crate) fn is_closed(&self) -> bool {
        self.failures.load(Ordering::Acquire) < FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_then_probes_once() {
        let breaker = Breaker::new();
        for _ in 0..FAILURES {
            assert!(breaker.allow());
            breaker.failure();
        }
        assert!(!breaker.allow() && !breaker.is_closed());
        // Backdate the opening: the backoff is over.
        breaker.open_until.store(0, Ordering::Release);
        assert!(breaker.allow(), "one probe");
        assert!(!breaker.allow(), "only one");
        breaker.failure();
        assert!(!breaker.allow(), "a failed probe opens it again");
        breaker.open_until.store(0, Ordering::Release);
        assert!(breaker.allow());
        breaker.success();
        assert!(breaker.is_closed() && breaker.allow() && breaker.allow());
    }
}
