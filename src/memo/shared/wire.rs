//! What the shared tier writes into Redis: key names and the value format.
//!
//! **Keys** are `ic1:{NAME:HEX}:gGEN`. `NAME` is the model's name (`@kv`
//! for the key-value API), never this server's namespace *number*, which
//! differs from one data dir to the next; `HEX` is the key's id (for a
//! model, already a blake3 of its name, digest and input). The braces are
//! a Redis Cluster hash tag: a key and the keys derived from it (its
//! lease) land on one node. `GEN` is the model's fleet-wide generation, so
//! a cache drop makes every older key unreachable without `SCAN`.
//!
//! **Values** are one Redis string: a header, then the raw bytes.
//!
//! ```text
//! "IC" version(1) expires_at(u64 LE, 0 = never) ct_len(u16 LE) ct
//!   checksum(16: blake3 of key name, header and value) value
//! ```
//!
//! Anything that does not decode (another version, a short or corrupted
//! string, a value written under another key) is a miss, never a wrong
//! answer.
//!
//! **Announcements** on the channel [`CHANNEL`] tell the fleet to drop
//! local copies: `k SENDER NAME HEX` (a key was deleted) or `g SENDER NAME
//! GEN` (a model's cache was dropped; its generation is now `GEN`).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::store::Entry;

const MAGIC: &[u8; 2] = b"IC";
const VERSION: u8 = 1;
const CHECKSUM: usize = 16;
/// Bytes before the content type.
const FIXED: usize = MAGIC.len() + 1 + 8 + 2;

/// The pub/sub channel of announcements.
pub(crate) const CHANNEL: &str = "ic1:invalidate";

/// What another server announced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Announcement {
    /// Key `id` of model `name` was deleted.
    Deleted { name: String, id: Vec<u8> },
    /// Model `name`'s cache was dropped; its generation is now this.
    Dropped { name: String, generation: u64 },
    /// Key `id` of model `name` was computed and stored (its lease ends).
    Computed { name: String, id: Vec<u8> },
}

/// The message announcing `what`, from server `sender`.
pub(crate) fn announce(sender: u64, what: &Announcement) -> String {
    match what {
        Announcement::Deleted { name, id } => format!("k {sender:x} {name} {}", hex(id)),
        Announcement::Dropped { name, generation } => format!("g {sender:x} {name} {generation}"),
        Announcement::Computed { name, id } => format!("d {sender:x} {name} {}", hex(id)),
    }
}

/// The announcement in `message` and its sender; `None` if malformed.
pub(crate) fn heard(message: &[u8]) -> Option<(u64, Announcement)> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.split(' ');
    let (kind, sender, name, arg) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let sender = u64::from_str_radix(sender, 16).ok()?;
    let name = name.to_string();
    let what = match kind {
        "k" => Announcement::Deleted {
            name,
            id: unhex(arg)?,
        },
        "g" => Announcement::Dropped {
            name,
            generation: arg.parse().ok()?,
        },
        "d" => Announcement::Computed {
            name,
            id: unhex(arg)?,
        },
        _ => return None,
    };
    parts.next().is_none().then_some((sender, what))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The Redis key of `key_name`'s lease (same hash tag: same node).
pub(crate) fn lease_key(key_name: &str) -> String {
    format!("{key_name}:lease")
}

/// The Redis key of entry `id` of model `name` in generation `generation`.
pub(crate) fn key_name(name: &str, id: &[u8], generation: u64) -> String {
    format!("ic1:{{{name}:{}}}:g{generation}", hex(id))
}

/// The Redis key holding model `name`'s generation (a counter).
pub(crate) fn generation_key(name: &str) -> String {
    format!("ic1:gen:{{{name}}}")
}

/// `entry` as stored under `key`.
pub(crate) fn encode(key: &str, entry: &Entry) -> Bytes {
    let ct = entry.content_type.as_deref().unwrap_or("").as_bytes();
    let ct = &ct[..ct.len().min(u16::MAX as usize)];
    let mut out = BytesMut::with_capacity(FIXED + ct.len() + CHECKSUM + entry.value.len());
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u64_le(entry.expires_at.unwrap_or(0));
    out.put_u16_le(ct.len() as u16);
    out.put_slice(ct);
    let sum = checksum(key, &out, &entry.value);
    out.put_slice(&sum);
    out.put_slice(&entry.value);
    out.freeze()
}

/// The entry stored under `key` as `raw`, or `None` if `raw` is not one
/// this version wrote for this key, intact.
pub(crate) fn decode(key: &str, raw: Bytes) -> Option<Entry> {
    if raw.len() < FIXED || &raw[..2] != MAGIC || raw[2] != VERSION {
        return None;
    }
    let expires_at = u64::from_le_bytes(raw[3..11].try_into().ok()?);
    let ct_len = u16::from_le_bytes(raw[11..13].try_into().ok()?) as usize;
    let header = FIXED + ct_len;
    if raw.len() < header + CHECKSUM {
        return None;
    }
    let value = raw.slice(header + CHECKSUM..);
    if raw[header..header + CHECKSUM] != checksum(key, &raw[..header], &value) {
        return None;
    }
    let ct = std::str::from_utf8(&raw[FIXED..header]).ok()?;
    Some(Entry {
        value,
        content_type: (!ct.is_empty()).then(|| Arc::from(ct)),
        expires_at: (expires_at != 0).then_some(expires_at),
    })
}

fn checksum(key: &str, header: &[u8], value: &[u8]) -> [u8; CHECKSUM] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key.as_bytes());
    hasher.update(header);
    hasher.update(value);
    let mut sum = [0; CHECKSUM];
    sum.copy_from_slice(&hasher.finalize().as_bytes()[..CHECKSUM]);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pinned_and_hash_tagged() {
        assert_eq!(key_name("minilm", &[0xab, 0x01], 3), "ic1:{minilm:ab01}:g3");
        assert_eq!(generation_key("minilm"), "ic1:gen:{minilm}");
    }

    #[test]
    fn announcements_round_trip() {
        let deleted = Announcement::Deleted {
            name: "@kv".into(),
            id: vec![0, 0xff, 7],
        };
        assert_eq!(announce(0xab, &deleted), "k ab @kv 00ff07");
        let dropped = Announcement::Dropped {
            name: "mlp".into(),
            generation: 4,
        };
        let computed = Announcement::Computed {
            name: "mlp".into(),
            id: vec![1],
        };
        for what in [deleted, dropped, computed] {
            assert_eq!(heard(announce(9, &what).as_bytes()), Some((9, what)));
        }
        for bad in [
            "",
            "k 1 a",
            "k 1 a 0",
            "x 1 a 00",
            "k zz a 00",
            "g 1 a b",
            "k 1 a 00 x",
        ] {
            assert_eq!(heard(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn values_round_trip_and_damage_is_a_miss() {
        let entry = Entry {
            value: Bytes::from_static(b"hello"),
            content_type: Some("text/plain".into()),
            expires_at: Some(1_700_000_000_000),
        };
        let raw = encode("k", &entry);
        let back = decode("k", raw.clone()).unwrap();
        assert_eq!(back.value, entry.value);
        assert_eq!(back.content_type.as_deref(), Some("text/plain"));
        assert_eq!(back.expires_at, entry.expires_at);
        assert!(
            decode("other", raw.clone()).is_none(),
            "another key's value"
        );
        for at in 0..raw.len() {
            let mut bad = raw.to_vec();
            bad[at] ^= 0x40;
            assert!(decode("k", bad.into()).is_none(), "byte {at} flipped");
        }
        for len in 0..raw.len() {
            assert!(decode("k", raw.slice(..len)).is_none(), "cut at {len}");
        }
        assert!(decode("k", Bytes::from_static(b"hello")).is_none());
        let plain = decode("k", encode("k", &Entry::new("v"))).unwrap();
        assert_eq!((plain.content_type, plain.expires_at), (None, None));
    }
}
