//! The writes the group-commit writer applies, and a group's form as one
//! write-ahead log record ([`super::wal`]).
//!
//! A group is logged as what it asks for, not what it did: puts, deletes
//! and namespace drops, in order. Replaying a suffix of the log over a
//! database that already holds part of it gives the same state (each op
//! sets or clears keys outright), so a replay from a checkpoint older than
//! the database is harmless. Sweeps and evictions are not logged: deadlines
//! travel with the entries, and every commit enforces the capacity again.

use bytes::Bytes;

use super::record::{decode, encode};
use crate::{
    error::{Error, Result},
    store::entry::Key,
};

/// One write applied by the group-commit writer.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: Key,
        entry: crate::store::entry::Entry,
    },
    Delete {
        key: Key,
    },
    /// Remove up to `SWEEP_LIMIT` expired entries.
    Sweep,
    /// Remove every entry of one namespace (one model's results).
    DropNamespace(u32),
}

/// Format version, first byte of every logged group.
const FORMAT: u8 = 1;
const PUT: u8 = 1;
const DELETE: u8 = 2;
const DROP: u8 = 3;

/// Append the ops of `ops` that change data to `out`; false if there are
/// none (nothing to log).
pub(super) fn encode_group(ops: &[&Op], out: &mut Vec<u8>) -> bool {
    out.push(FORMAT);
    let mut any = false;
    for op in ops {
        match op {
            Op::Put { key, entry } => {
                out.push(PUT);
                push_key(out, key);
                let record = encode(0, entry);
                out.extend_from_slice(&(record.len() as u32).to_le_bytes());
                out.extend_from_slice(&record);
            }
            Op::Delete { key } => {
                out.push(DELETE);
                push_key(out, key);
            }
            Op::DropNamespace(ns) => {
                out.push(DROP);
                out.extend_from_slice(&ns.to_le_bytes());
            }
            Op::Sweep => continue,
        }
        any = true;
    }
    any
}

/// The ops of a logged group, in order.
pub(super) fn decode_group(payload: &[u8]) -> Result<Vec<Op>> {
    let mut at = Reader(payload);
    if at.take(1)? != [FORMAT] {
        return Err(corrupt());
    }
    let mut ops = Vec::new();
    while !at.0.is_empty() {
        let op = match at.take(1)?[0] {
            PUT => {
                let key = at.key()?;
                let len = at.u32()? as usize;
                let entry = decode(at.take(len)?)?.1;
                Op::Put { key, entry }
            }
            DELETE => Op::Delete { key: at.key()? },
            DROP => Op::DropNamespace(at.u32()?),
            _ => return Err(corrupt()),
        };
        ops.push(op);
    }
    Ok(ops)
}

fn push_key(out: &mut Vec<u8>, key: &Key) {
    out.extend_from_slice(&key.namespace.to_le_bytes());
    out.extend_from_slice(&(key.id.len() as u32).to_le_bytes());
    out.extend_from_slice(&key.id);
}

/// A cursor over a logged group.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn key(&mut self) -> Result<Key> {
        let namespace = self.u32()?;
        let len = self.u32()? as usize;
        let id = Bytes::copy_from_slice(self.take(len)?);
        Ok(Key { namespace, id })
    }
}

/// A record that passed its checksum yet does not parse: written by
/// another version, or a bug; the replay stops there.
fn corrupt() -> Error {
    Error::Storage("a write-ahead log record does not parse".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::Entry;

    #[test]
    fn a_group_round_trips_without_its_sweeps() {
        let put = Op::Put {
            key: Key::new(3, b"k"),
            entry: Entry {
                value: Bytes::from_static(b"value"),
                content_type: Some("text/plain".into()),
                expires_at: Some(99),
            },
        };
        let delete = Op::Delete {
            key: Key::new(0, b"gone"),
        };
        assert!(!encode_group(&[&Op::Sweep], &mut Vec::new()));
        let mut out = Vec::new();
        assert!(encode_group(
            &[&put, &Op::Sweep, &delete, &Op::DropNamespace(7)],
            &mut out
        ));
        let back = decode_group(&out).unwrap();
        assert_eq!(
            format!("{back:?}"),
            format!("{:?}", [put, delete, Op::DropNamespace(7)])
        );
        assert!(decode_group(&out[..out.len() - 1]).is_err());
    }
}
