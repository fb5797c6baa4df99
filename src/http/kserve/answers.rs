//! The answer cache (ARCHITECTURE.md §1, "The answer cache"): whole KServe
//! REST infer responses, kept in the memory tier under a digest of the
//! request, so a repeated request is answered without decoding its JSON,
//! keying its rows or encoding its outputs.
//!
//! Why: on a cache hit the row path's work is framework and formats (the
//! JSON decode alone costs about as much as a whole KV hit), none of it
//! needed to send bytes that were sent before. The rows stay the cache of
//! record; an answer is a copy of what they gave, and never outlives them:
//!
//! - **Key**: one keyed blake3 pass (its own derived key, so never a row's
//!   key) over the model (name, file digest: a new model file never serves
//!   an old answer), what decides whether the row path would refuse the
//!   request (`max_request_size`, the model's `queue`), the
//!   `Inference-Header-Content-Length` and the exact body bytes, under the
//!   model's namespace. One pass, not [`crate::infer::key::KeyBuilder`]'s
//!   two: this key is on the hit path, and a short body then costs one
//!   blake3 chunk.
//! - **Kept** in memory only ([`Store::remember`]), after a `200` whose rows
//!   were all hits (a request seen for the second time: a one-off request
//!   costs no answer) and that may be stored (no `no-store`), if every row
//!   is still in memory; it expires with the first of them and goes with a
//!   model cache drop, local or announced by the fleet. Never on disk or in
//!   the shared tier; errors are never kept.
//! - **Answered** when the request may read the cache (no `no-cache`), as
//!   a full hit of the row path answers: `X-Cache: hit`, the same headers,
//!   and one memory hit counted per distinct row.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    infer::{key::ModelDigest, registry::Model, Response},
    memo::Store,
    store::Key,
};

/// The blake3 key every answer key is hashed with, derived once.
static ANSWER_KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
    blake3::derive_key("infercache 2026-12-03 kserve answer key v1", b"")
});

/// The answer kept: the distinct row count, the JSON header's length (or
/// [`JSON_ONLY`]), then the body.
const PREFIX: usize = 4 + 8;
/// The header length of an answer without binary outputs.
const JSON_ONLY: u64 = u64::MAX;

/// A response body and its JSON header's length when binary data follows
/// (`Inference-Header-Content-Length`).
pub(super) struct Answer {
    pub(super) body: Bytes,
    pub(super) header_len: Option<usize>,
}

/// What decides an answer's bytes, besides the body.
pub(super) struct Request<'a> {
    /// The model's disk namespace, name and file digest.
    pub(super) namespace: u32,
    pub(super) name: &'a str,
    pub(super) digest: &'a ModelDigest,
    /// The model's `queue`.
    pub(super) queue: usize,
    /// `max_request_size`.
    pub(super) limit: u64,
    /// `Inference-Header-Content-Length`.
    pub(super) header_len: Option<usize>,
}

impl<'a> Request<'a> {
    /// A request to `model` under its knobs as of now.
    pub(super) fn to(model: &'a Model, header_len: Option<usize>, limit: u64) -> Request<'a> {
        Request {
            namespace: model.namespace,
            name: model.name(),
            digest: &model.digest,
            queue: model.knobs().queue,
            limit,
            header_len,
        }
    }
}

/// The key of the answer to `body` sent as `request` says.
pub(super) fn key(request: &Request<'_>, body: &[u8]) -> Key {
    let name = request.name.as_bytes();
    // Fixed-width fields first, then the name with its length, then the
    // body: no two requests share a byte stream.
    let mut hasher = blake3::Hasher::new_keyed(&ANSWER_KEY);
    hasher
        .update(request.digest)
        .update(&request.limit.to_le_bytes())
        .update(&(request.queue as u64).to_le_bytes())
        .update(
            &request
                .header_len
                .map_or(JSON_ONLY, |n| n as u64)
                .to_le_bytes(),
        )
        .update(&(name.len() as u64).to_le_bytes())
        .update(name)
        .update(body);
    Key::new(request.namespace, hasher.finalize().as_bytes())
}

/// The answer kept under `key`, counted as its rows' memory hits.
pub(super) fn recall(store: &Store, key: &Key) -> Option<Answer> {
    let entry = store.recall(key, |entry| {
        prefix(&entry.value).map_or(0, |(rows, _)| rows)
    })?;
    let (_, header_len) = prefix(&entry.value)?;
    Some(Answer {
        body: entry.value.slice(PREFIX..),
        header_len: (header_len != JSON_ONLY).then_some(header_len as usize),
    })
}

/// Keep `answer` to the request under `key`, built from `response`, if
/// its rows were all hits and are all still in memory and the model's cache
/// was not dropped since `generation` (read before the rows were).
pub(super) fn remember(
    store: &Store,
    key: Key,
    answer: &Answer,
    response: &Response,
    generation: u64,
) {
    let rows = response.row_keys();
    let mut value = BytesMut::with_capacity(PREFIX + answer.body.len());
    value.put_u32_le(u32::try_from(rows.len()).unwrap_or(u32::MAX));
    value.put_u64_le(answer.header_len.map_or(JSON_ONLY, |n| n as u64));
    value.put_slice(&answer.body);
    store.remember(key, value.freeze(), &rows, generation);
}

/// The distinct row count and header length a kept answer starts with.
fn prefix(value: &[u8]) -> Option<(u64, u64)> {
    let rows = u32::from_le_bytes(value.get(..4)?.try_into().ok()?);
    let header_len = u64::from_le_bytes(value.get(4..PREFIX)?.try_into().ok()?);
    Some((u64::from(rows), header_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: ModelDigest = [7; 32];
    const BASE: Request<'static> = Request {
        namespace: 3,
        name: "mlp",
        digest: &DIGEST,
        queue: 4096,
        limit: 1 << 20,
        header_len: None,
    };

    #[test]
    fn everything_that_decides_an_answer_changes_its_key() {
        let body = br#"{"inputs":[]}"#;
        let base = key(&BASE, body);
        assert_eq!(base, key(&BASE, body), "deterministic");
        assert_eq!(base.namespace, 3, "under the model's namespace");
        let variants = [
            key(
                &Request {
                    digest: &[8; 32],
                    ..BASE
                },
                body,
            ),
            key(
                &Request {
                    name: "mlp2",
                    ..BASE
                },
                body,
            ),
            key(&Request { queue: 10, ..BASE }, body),
            key(
                &Request {
                    limit: 1 << 10,
                    ..BASE
                },
                body,
            ),
            key(
                &Request {
                    header_len: Some(13),
                    ..BASE
                },
                body,
            ),
            key(
                &Request {
                    header_len: Some(12),
                    ..BASE
                },
                body,
            ),
            key(&BASE, br#"{"inputs":[] }"#),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(base.id, v.id, "variant {i}");
        }
        // Never a row's key: the same model and bytes as a row entry.
        let row = crate::infer::key::KeyBuilder::new("tensor", 3, "mlp", &DIGEST).finish();
        assert_ne!(base.id, row.id);
    }

    #[test]
    fn a_kept_answer_reads_back_its_prefix() {
        assert_eq!(prefix(&[]), None);
        let mut value = BytesMut::new();
        value.put_u32_le(3);
        value.put_u64_le(JSON_ONLY);
        value.put_slice(b"{}");
        assert_eq!(prefix(&value), Some((3, JSON_ONLY)));
    }
}
