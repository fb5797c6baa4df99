//! The record stored under each key: a small fixed header (format,
//! write sequence, deadline, content-type length), the content type and
//! the value. The sequence lives in the record so an overwrite or delete
//! can find and drop the entry's index rows without a second lookup.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::store::entry::Entry;

/// Record format version, first byte of every record.
const FORMAT: u8 = 1;
/// version (1) + sequence (8) + deadline (8) + content-type length (2).
pub(super) const HEADER: usize = 19;

pub(super) fn encode(seq: u64, entry: &Entry) -> Vec<u8> {
    let ct = entry.content_type.as_deref().unwrap_or("").as_bytes();
    let ct_len = u16::try_from(ct.len()).unwrap_or(u16::MAX);
    let ct = &ct[..usize::from(ct_len)];
    let mut out = Vec::with_capacity(HEADER + ct.len() + entry.value.len());
    out.push(FORMAT);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&entry.expires_at.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&ct_len.to_le_bytes());
    out.extend_from_slice(ct);
    out.extend_from_slice(&entry.value);
    out
}

/// (write sequence, entry) from a stored record.
pub(super) fn decode(record: &[u8]) -> Result<(u64, Entry)> {
    let corrupt = || Error::Storage("corrupt record in the disk tier".into());
    if record.len() < HEADER || record[0] != FORMAT {
        return Err(corrupt());
    }
    let u64_at = |i: usize| u64::from_le_bytes(record[i..i + 8].try_into().expect("8 bytes"));
    let seq = u64_at(1);
    let deadline = u64_at(9);
    let ct_len = usize::from(u16::from_le_bytes([record[17], record[18]]));
    let body = &record[HEADER..];
    if body.len() < ct_len {
        return Err(corrupt());
    }
    let content_type = match ct_len {
        0 => None,
        _ => Some(
            std::str::from_utf8(&body[..ct_len])
                .map_err(|_| corrupt())?
                .into(),
        ),
    };
    let entry = Entry {
        value: Bytes::copy_from_slice(&body[ct_len..]),
        content_type,
        expires_at: (deadline != 0).then_some(deadline),
    };
    Ok((seq, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let e = Entry {
            value: Bytes::from_static(b"hello"),
            content_type: Some("text/plain".into()),
            expires_at: Some(42),
        };
        let (seq, back) = decode(&encode(7, &e)).unwrap();
        assert_eq!((seq, back), (7, e));
        assert!(decode(b"\x02short").is_err());
    }
}
