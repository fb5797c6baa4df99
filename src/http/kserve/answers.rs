//! The answer cache (ARCHITECTURE.md §1, "The answer cache"): whole KServe
//! REST infer responses, kept in the memory tier with the request they
//! answer, so a repeated request is answered without decoding its JSON,
//! keying its rows or encoding its outputs.
//!
//! Why: on a cache hit the row path's work is framework and formats (the
//! JSON decode alone costs about as much as a whole KV hit), none of it
//! needed to send bytes that were sent before. The rows stay the cache of
//! record; an answer is a copy of what they gave, and never outlives them:
//!
//! - **Found** by a fast hash (aHash, keyed at random per process, so no
//!   client can aim collisions), then **checked** byte for byte against
//!   what decides the answer: the model's file digest (a new model file
//!   never serves an old answer), what decides whether the row path would
//!   refuse the request (`max_request_size`, the model's `queue`), the
//!   `Inference-Header-Content-Length` and the exact body. The check, not
//!   the hash, makes an answer right, so the hit path needs no
//!   cryptographic digest (a blake3 one cost an eighth of a hit); the price
//!   is the request's bytes kept beside the answer. The key's namespace is
//!   the model's, which also fixes the name the answer carries.
//! - **Kept** in memory only ([`Store::remember`]), after a `200` whose rows
//!   were all hits (a request seen for the second time: a one-off request
//!   costs no answer) and that may be stored (no `no-store`), if every row
//!   is still in memory; it expires with the first of them and goes with a
//!   model cache drop, local or announced by the fleet. Never on disk or in
//!   the shared tier; errors are never kept.
//! - **Answered** when the request may read the cache (no `no-cache`), as
//!   a full hit of the row path answers: `X-Cache: hit`, the same headers,
//!   and one memory hit counted per distinct row.

use std::{hash::BuildHasher, sync::LazyLock};

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    infer::{key::ModelDigest, registry::Model, RowKeys},
    memo::Store,
    store::KeyRef,
};

/// The hash that finds answers, keyed at random once per process.
static FINDER: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);

/// The header length of an answer without binary outputs.
const JSON_ONLY: u64 = u64::MAX;

/// What an answer's request is checked by, besides its body: digest, limit,
/// queue, header length.
const FIELDS: usize = 32 + 8 + 8 + 8;

/// A kept answer starts with the distinct row count, the response's JSON
/// header length (or [`JSON_ONLY`]), the request's body length, the
/// request's [`FIELDS`]; then the request body, then the response body.
const PREFIX: usize = 4 + 8 + 4 + FIELDS;

/// Where an answer is looked for: its model's namespace and the hash of
/// its request. Looked up borrowed ([`KeyRef`]): the hit path copies no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    namespace: u32,
    hash: [u8; 8],
}

impl Key {
    fn borrowed(&self) -> KeyRef<'_> {
        KeyRef {
            namespace: self.namespace,
            id: &self.hash,
        }
    }

    fn owned(&self) -> crate::store::Key {
        crate::store::Key::new(self.namespace, self.hash)
    }
}

/// A response body and its JSON header's length when binary data follows
/// (`Inference-Header-Content-Length`).
pub(super) struct Answer {
    pub(super) body: Bytes,
    pub(super) header_len: Option<usize>,
}

/// A request to a model, as far as its answer depends on it.
pub(super) struct Request<'a> {
    /// The model's namespace (its name, on this server).
    pub(super) namespace: u32,
    /// What the answer is checked by besides the body.
    fields: [u8; FIELDS],
    pub(super) body: &'a [u8],
}

impl<'a> Request<'a> {
    /// `body` sent to `model` under its knobs as of now, with
    /// `Inference-Header-Content-Length` `header_len`, under
    /// `max_request_size` `limit`.
    pub(super) fn to(
        model: &Model,
        header_len: Option<usize>,
        limit: u64,
        body: &'a [u8],
    ) -> Request<'a> {
        Request::new(
            model.namespace,
            &model.digest,
            model.knobs().queue,
            limit,
            header_len,
            body,
        )
    }

    fn new(
        namespace: u32,
        digest: &ModelDigest,
        queue: usize,
        limit: u64,
        header_len: Option<usize>,
        body: &'a [u8],
    ) -> Request<'a> {
        let mut fields = [0; FIELDS];
        fields[..32].copy_from_slice(digest);
        fields[32..40].copy_from_slice(&limit.to_le_bytes());
        fields[40..48].copy_from_slice(&(queue as u64).to_le_bytes());
        let header_len = header_len.map_or(JSON_ONLY, |n| n as u64);
        fields[48..].copy_from_slice(&header_len.to_le_bytes());
        Request {
            namespace,
            fields,
            body,
        }
    }

    /// Where the answer is looked for.
    pub(super) fn key(&self) -> Key {
        let mut hash = FINDER.build_hasher();
        std::hash::Hasher::write(&mut hash, &self.fields);
        std::hash::Hasher::write(&mut hash, self.body);
        Key {
            namespace: self.namespace,
            hash: std::hash::Hasher::finish(&hash).to_le_bytes(),
        }
    }

    /// The rows and response header length of `value` if it is the
    /// answer kept for this request.
    fn check(&self, value: &[u8]) -> Option<(u64, u64)> {
        let (rows, header_len, body_len, fields) = prefix(value)?;
        let body = value.get(PREFIX..PREFIX + body_len)?;
        (fields == self.fields && body == self.body).then_some((rows, header_len))
    }
}

/// The answer kept for `request` (found under `key`), counted as its rows'
/// memory hits.
pub(super) fn recall(store: &Store, key: &Key, request: &Request<'_>) -> Option<Answer> {
    let mut header_len = JSON_ONLY;
    let entry = store.recall(&key.borrowed(), |entry| {
        let (rows, found) = request.check(&entry.value)?;
        header_len = found;
        Some(rows)
    })?;
    Some(Answer {
        body: entry.value.slice(PREFIX + request.body.len()..),
        header_len: (header_len != JSON_ONLY).then_some(header_len as usize),
    })
}

/// Keep `answer` to `request` under `key`, built from `rows`, if they
/// were all hits and are all still in memory and the model's cache
/// was not dropped since `generation` (read before the rows were).
pub(super) fn remember(
    store: &Store,
    key: &Key,
    request: &Request<'_>,
    answer: &Answer,
    rows: &RowKeys,
    generation: u64,
) {
    let Ok(body_len) = u32::try_from(request.body.len()) else {
        return;
    };
    let rows = rows.distinct();
    let mut value = BytesMut::with_capacity(PREFIX + request.body.len() + answer.body.len());
    value.put_u32_le(u32::try_from(rows.len()).unwrap_or(u32::MAX));
    value.put_u64_le(answer.header_len.map_or(JSON_ONLY, |n| n as u64));
    value.put_u32_le(body_len);
    value.put_slice(&request.fields);
    value.put_slice(request.body);
    value.put_slice(&answer.body);
    store.remember(key.owned(), value.freeze(), &rows, generation);
}

/// The distinct row count, response header length, request body length
/// and request fields a kept answer starts with.
fn prefix(value: &[u8]) -> Option<(u64, u64, usize, &[u8])> {
    let rows = u32::from_le_bytes(value.get(..4)?.try_into().ok()?);
    let header_len = u64::from_le_bytes(value.get(4..12)?.try_into().ok()?);
    let body_len = u32::from_le_bytes(value.get(12..16)?.try_into().ok()?);
    let fields = value.get(16..PREFIX)?;
    Some((u64::from(rows), header_len, body_len as usize, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: ModelDigest = [7; 32];

    fn request(body: &[u8]) -> Request<'_> {
        Request::new(3, &DIGEST, 4096, 1 << 20, None, body)
    }

    /// `request`'s answer as [`remember`] keeps it.
    fn kept(request: &Request<'_>, answer: &[u8]) -> Vec<u8> {
        let mut value = BytesMut::new();
        value.put_u32_le(2);
        value.put_u64_le(JSON_ONLY);
        value.put_u32_le(request.body.len() as u32);
        value.put_slice(&request.fields);
        value.put_slice(request.body);
        value.put_slice(answer);
        value.to_vec()
    }

    #[test]
    fn an_answer_serves_only_its_own_request() {
        let body = br#"{"inputs":[]}"#;
        let base = request(body);
        let value = kept(&base, b"{}");
        assert_eq!(base.check(&value), Some((2, JSON_ONLY)));
        assert_eq!(base.key(), request(body).key(), "deterministic");
        assert_eq!(base.key().namespace, 3, "under the model's namespace");
        let others = [
            Request::new(3, &[8; 32], 4096, 1 << 20, None, body),
            Request::new(3, &DIGEST, 10, 1 << 20, None, body),
            Request::new(3, &DIGEST, 4096, 1 << 10, None, body),
            Request::new(3, &DIGEST, 4096, 1 << 20, Some(13), body),
            Request::new(3, &DIGEST, 4096, 1 << 20, Some(12), body),
            request(br#"{"inputs":[] }"#),
            request(br#"{"inputs":["#),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_eq!(other.check(&value), None, "request {i}");
            assert_ne!(other.key(), base.key(), "request {i}");
        }
        // A value too short to be an answer, or cut, is nobody's.
        assert_eq!(base.check(&value[..PREFIX + 3]), None);
        assert_eq!(base.check(b"row"), None);
    }
}
