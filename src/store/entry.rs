//! What the tiers hold: a [`Key`], an [`Entry`] (value, content type,
//! deadline), the [`Clock`] deadlines are read against, and a tier's
//! [`Usage`]. Every store file uses them, so they sit below all of them.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

/// A cache key: a namespace (0 for the KV API, one per model) and bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: u32,
    pub id: Bytes,
}

impl Key {
    pub fn new(namespace: u32, id: impl AsRef<[u8]>) -> Key {
        Key {
            namespace,
            id: Bytes::copy_from_slice(id.as_ref()),
        }
    }
}

/// A [`Key`] borrowed from a request: the memory tier is searched with it
/// without copying the id (ARCHITECTURE.md §1, "The hot path"). It hashes
/// as the `Key` with the same parts does (`Bytes` hashes as its slice).
#[derive(Debug, Clone, Copy, Hash)]
pub struct KeyRef<'a> {
    pub namespace: u32,
    pub id: &'a [u8],
}

impl moka::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.namespace == key.namespace && self.id == key.id
    }
}

/// A cached value with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub content_type: Option<Arc<str>>,
    /// Absolute deadline in Unix milliseconds; `None` lives until evicted.
    pub expires_at: Option<u64>,
}

impl Entry {
    /// An entry that lives until evicted.
    pub fn new(value: impl Into<Bytes>) -> Entry {
        Entry {
            value: value.into(),
            content_type: None,
            expires_at: None,
        }
    }

    /// Whether the deadline has passed; reads the clock only for entries
    /// that have a deadline.
    pub fn is_expired(&self, clock: &Clock) -> bool {
        matches!(self.expires_at, Some(at) if at <= clock.now_ms())
    }
}

/// Wall-clock milliseconds that follow tokio's clock: anchored to the
/// system time once, then advanced by `tokio::time::Instant`, so tests can
/// move time with `tokio::time::pause`/`advance` while deadlines stay
/// meaningful across restarts.
#[derive(Debug, Clone)]
pub struct Clock {
    anchor_ms: u64,
    anchor: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let anchor_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            anchor_ms,
            anchor: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.anchor_ms.saturating_add(elapsed)
    }

    /// The deadline `ttl` from now, for [`Entry::expires_at`]; a lifetime
    /// too long to represent saturates (it lives until evicted).
    pub fn deadline(&self, ttl: Duration) -> u64 {
        u64::try_from(ttl.as_millis()).map_or(u64::MAX, |ms| self.now_ms().saturating_add(ms))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Entries and bytes held by one tier.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_key_hashes_and_compares_as_its_key() {
        let hasher = ahash::RandomState::new();
        let key = Key::new(7, b"some id");
        let borrowed = KeyRef {
            namespace: 7,
            id: b"some id",
        };
        assert_eq!(hasher.hash_one(&key), hasher.hash_one(borrowed));
        assert!(moka::Equivalent::equivalent(&borrowed, &key));
        let other = KeyRef {
            namespace: 8,
            id: b"some id",
        };
        assert!(!moka::Equivalent::equivalent(&other, &key));
    }
}
