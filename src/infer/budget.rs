//! The VRAM budget: one semaphore of `vram_units` permits shared by every
//! model; each run holds `acquire_many(model.vram_units)` for its duration.
//!
//! A model whose cost exceeds the budget is refused at start-up (config
//! validation), so an acquire always completes eventually. The permit is
//! owned by the run, so a run that ends any way (success, error, panic)
//! gives its units back.

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc,
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shared budget.
#[derive(Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    in_use: Gauge,
    /// Highest number of units ever held at once (for tests and stats).
    peak: Arc<AtomicU32>,
    held: Arc<AtomicU32>,
}

/// Units held by one run; released on drop.
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    units: u32,
    budget: Budget,
}

impl Budget {
    pub fn new(units: u32, in_use: Gauge) -> Budget {
        Budget {
            semaphore: Arc::new(Semaphore::new(units as usize)),
            in_use,
            peak: Arc::default(),
            held: Arc::default(),
        }
    }

    /// Wait for `units` permits.
    pub async fn acquire(&self, units: u32) -> Permit {
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the budget semaphore is never closed");
        let held = self.held.fetch_add(units, Ordering::SeqCst) + units;
        self.peak.fetch_max(held, Ordering::SeqCst);
        self.in_use.inc_by(i64::from(units));
        Permit {
            _permit: permit,
            units,
            budget: self.clone(),
        }
    }

    /// The most units held at once since start.
    pub fn peak(&self) -> u32 {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.units, Ordering::SeqCst);
        self.budget.in_use.dec_by(i64::from(self.units));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn units_are_shared_and_returned() {
        let budget = Budget::new(3, Gauge::default());
        let a = budget.acquire(2).await;
        // Only one unit is left: a second 2-unit run must wait.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), budget.acquire(2));
        assert!(waiting.await.is_err());
        let b = budget.acquire(1).await;
        assert_eq!(budget.peak(), 3);
        drop((a, b));
        let _c = budget.acquire(3).await;
        assert_eq!(budget.in_use.get(), 3);
    }
}
