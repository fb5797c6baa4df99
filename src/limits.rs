//! Bounds of what the cache stores, in the one module below both the
//! configuration (which refuses a setting outside them at start-up and on
//! reload) and the store (which enforces them), so neither imports the
//! other (ARCHITECTURE.md section 3, "Bounded everything").

use std::{ops::RangeInclusive, time::Duration};

/// Lifetimes an entry may be given (KV `?ttl=`, a model's `ttl`): from one
/// second to ten years, far from any overflow.
pub const TTL_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(10 * 365 * 24 * 3600);

/// Bytes of every disk entry that are not its value, at worst: a
/// 1024-byte key (charged twice), the record header, a content type and
/// the per-entry overhead of `store/disk/`. `max_value_size` plus this
/// must fit `disk_capacity`, or a value of the limit would evict itself in
/// the commit that stores it.
pub const ENTRY_RESERVE: u64 = 4096;
