//! One request, many memoized parts: the rows of a KServe request, the
//! texts of an embeddings request (STYLE habit 16: a pipeline is written
//! once).
//!
//! ```text
//! key every part, keep the distinct keys    (off the async workers if big)
//!   -> get_or_compute per distinct key      (all at once, try_join_all)
//!   -> combined status                      (Miss > Coalesced > Hit)
//!   -> decode each distinct value, reorder to the request's parts,
//!      assemble the answer                  (off the async workers if big)
//! ```
//!
//! Equal parts share one key, so they are looked up and computed once, and
//! only distinct parts are ever copied. What differs between endpoints is
//! the [`Parts`] trait.

use std::{collections::HashMap, future::Future, sync::Arc};

use bytes::Bytes;

use super::{CacheStatus, Lookup, Memo};
use crate::{blocking::off_runtime, error::Result, store::Key};

/// What differs between requests that fan out over memoized parts.
pub(crate) trait Parts: Send + Sync + Sized + 'static {
    /// One part's result, decoded from its cached value.
    type Part: Send;
    /// The request's answer, built from its parts.
    type Whole: Send + 'static;

    /// How many parts the request has.
    fn count(&self) -> usize;

    /// Input bytes: keying and assembling a big request leave the async
    /// workers.
    fn bytes(&self) -> usize;

    /// The key of part `i`.
    fn key(&self, i: usize) -> Key;

    /// Refuse a request once it has `distinct` different parts, checked
    /// while keying, before any part is copied.
    fn check_distinct(&self, distinct: usize) -> Result<()>;

    /// Compute part `i` (called only on a miss).
    fn compute(self: Arc<Self>, i: usize) -> impl Future<Output = Result<Bytes>> + Send + 'static;

    /// Decode a part's cached value.
    fn decode(&self, value: &Bytes) -> Result<Self::Part>;

    /// The answer from every part's result, in request order.
    fn assemble(&self, parts: Vec<&Self::Part>) -> Result<Self::Whole>;
}

/// The distinct keys of a request's parts.
struct Plan {
    /// Key and first part index of each distinct part.
    distinct: Vec<(Key, usize)>,
    /// Per part, its index into `distinct`.
    slots: Vec<usize>,
}

impl Memo {
    /// Every part of `parts` through [`Memo::get_or_compute`], each
    /// distinct part once, assembled in request order; the status is
    /// `Miss` if any part was computed for this request, else `Coalesced`
    /// if any waited on another's computation, else `Hit`.
    pub(crate) async fn get_or_compute_many<P: Parts>(
        &self,
        parts: Arc<P>,
        lookup: Lookup,
    ) -> Result<(P::Whole, CacheStatus)> {
        let bytes = parts.bytes();
        if parts.count() == 1 {
            return self.get_or_compute_one(parts, lookup).await;
        }
        let keying = parts.clone();
        let Plan { distinct, slots } = off_runtime(bytes, move || plan(&*keying)).await?;
        let shared = &parts;
        let lookups = distinct
            .into_iter()
            .map(|(key, i)| self.get_or_compute(key, lookup, move || shared.clone().compute(i)));
        let found = futures::future::try_join_all(lookups).await?;
        let status = combined_status(found.iter().map(|(_, s)| *s));
        let values: Vec<Bytes> = found.into_iter().map(|(entry, _)| entry.value).collect();
        let whole = off_runtime(bytes, move || {
            let decoded = values
                .iter()
                .map(|v| parts.decode(v))
                .collect::<Result<Vec<_>>>()?;
            parts.assemble(slots.iter().map(|&slot| &decoded[slot]).collect())
        })
        .await?;
        Ok((whole, status))
    }
}

impl Memo {
    /// [`Memo::get_or_compute_many`] of a request with one part (the hot
    /// path of a single-row infer hit, ARCHITECTURE.md §1): no map of
    /// distinct keys, no fan-out, the part straight to the answer.
    async fn get_or_compute_one<P: Parts>(
        &self,
        parts: Arc<P>,
        lookup: Lookup,
    ) -> Result<(P::Whole, CacheStatus)> {
        let bytes = parts.bytes();
        let keying = parts.clone();
        let key = off_runtime(bytes, move || {
            keying.check_distinct(1)?;
            Ok(keying.key(0))
        })
        .await?;
        let computing = parts.clone();
        let (entry, status) = self
            .get_or_compute(key, lookup, move || computing.compute(0))
            .await?;
        let whole = off_runtime(bytes, move || {
            let part = parts.decode(&entry.value)?;
            parts.assemble(vec![&part])
        })
        .await?;
        Ok((whole, status))
    }
}

/// Key every part in place: the distinct keys with the first part of each,
/// and each part's index into them.
fn plan(parts: &impl Parts) -> Result<Plan> {
    let count = parts.count();
    let mut distinct: Vec<(Key, usize)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut slots = Vec::with_capacity(count);
    for i in 0..count {
        let key = parts.key(i);
        let slot = *index.entry(key.clone()).or_insert_with(|| {
            distinct.push((key, i));
            distinct.len() - 1
        });
        parts.check_distinct(distinct.len())?;
        slots.push(slot);
    }
    Ok(Plan { distinct, slots })
}

/// A request's status from its parts'.
fn combined_status(parts: impl Iterator<Item = CacheStatus>) -> CacheStatus {
    parts
        .min_by_key(|s| match s {
            CacheStatus::Miss => 0,
            CacheStatus::Coalesced => 1,
            CacheStatus::Hit(_) => 2,
        })
        .expect("a request has at least one part")
}
