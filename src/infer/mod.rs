//! Inference: ONNX models through ort, memoized per row.
//!
//! ```text
//! request tensors -> check (registry::Model) -> split into rows
//!   -> per distinct row: key -> memo (hit | coalesced | compute)
//!        compute = batcher (queue, dynamic batch) -> budget (VRAM units)
//!                  -> backend (ort session run on a blocking thread)
//!   -> reassemble the requested outputs in row order
//! ```
//!
//! A batchable model (dynamic first dimension everywhere) is cached per
//! row: a request of 8 rows of which 6 are cached runs 2, identical rows in
//! one request run once, and rows another request is computing are waited
//! on. A model with a fixed first dimension is cached per whole request.

pub mod backend;
pub mod batcher;
pub mod budget;
mod check;
pub mod registry;
pub mod tensor;
pub mod text;

use std::{collections::HashMap, sync::Arc};

use bytes::{Bytes, BytesMut};

use self::{
    registry::{Model, Registry},
    tensor::{decode_row, encode_row, Tensor},
};
use crate::{
    config::{Live, ModelLive},
    error::{Error, Result},
    key::{tensor_key, TensorRef},
    memo::{CacheStatus, Lookup, Memo, Policy},
    store::Key,
};

/// One inference request, decoded from its wire format.
#[derive(Debug, Clone)]
pub struct Request {
    pub inputs: Vec<Tensor>,
    /// Output names wanted; `None` or empty: all.
    pub outputs: Option<Vec<String>>,
    pub policy: Policy,
}

/// The requested outputs and how they were found.
#[derive(Debug)]
pub struct Response {
    pub outputs: Vec<Tensor>,
    /// `Miss` if any row was computed for this request, else `Coalesced`
    /// if any waited on another's computation, else `Hit`.
    pub status: CacheStatus,
}

/// The inference service: models plus the memoizer.
pub struct Inference {
    pub registry: Registry,
    memo: Memo,
    live: Live,
}

impl Inference {
    pub fn new(registry: Registry, memo: Memo, live: Live) -> Inference {
        Inference {
            registry,
            memo,
            live,
        }
    }

    /// The memo lookup for `model` under the live configuration, and the
    /// model's live knobs.
    fn lookup(&self, model: &Model, policy: Policy) -> (Lookup, ModelLive) {
        let knobs = model.knobs();
        let lookup = Lookup {
            policy,
            timeout: Some(self.live.borrow().request_timeout),
            ttl: knobs.ttl,
        };
        (lookup, knobs)
    }

    pub async fn infer(&self, model: &str, request: Request) -> Result<Response> {
        let model = self.registry.get(model)?;
        let max_bytes = self.live.borrow().max_request_size;
        let inputs = model.check_inputs(request.inputs, max_bytes)?;
        let wanted = model.check_outputs(request.outputs.as_deref())?;
        let (lookup, settings) = self.lookup(&model, request.policy);
        let rows = if model.batchable {
            inputs[0].shape[0] as usize
        } else {
            1
        };
        // Keying and reassembly cost about a key per row plus the bytes.
        let (size, keying, queue) = (
            inputs.iter().map(|t| t.data.len()).sum::<usize>() + rows.saturating_mul(64),
            model.clone(),
            settings.queue,
        );
        let (inputs, distinct, row_slot) = off_runtime(size, move || {
            let plan = plan_rows(&keying, &inputs, rows, queue)?;
            Ok((inputs, plan.distinct, plan.row_slot))
        })
        .await?;
        let lookups = distinct.iter().map(|(key, i)| {
            let row = if model.batchable {
                row_of(&inputs, *i, rows)
            } else {
                inputs.clone()
            };
            let model = model.clone();
            self.memo
                .get_or_compute(key.clone(), lookup, move || async move {
                    model.batcher.run(row).await.map(|out| encode_row(&out))
                })
        });
        let found = futures::future::try_join_all(lookups).await?;
        let status = combined_status(found.iter().map(|(_, s)| *s));
        let values: Vec<Bytes> = found.into_iter().map(|(entry, _)| entry.value).collect();
        let outputs = off_runtime(size, move || {
            let decoded = values.iter().map(decode_row).collect::<Result<Vec<_>>>()?;
            let per_row: Vec<&Vec<Tensor>> = row_slot.iter().map(|slot| &decoded[*slot]).collect();
            wanted
                .iter()
                .map(|&o| assemble(&model, o, &per_row))
                .collect::<Result<_>>()
        })
        .await?;
        Ok(Response { outputs, status })
    }
}

/// The distinct rows of a request and where each row's result comes from.
struct RowPlan {
    /// Key and first row index of each distinct row.
    distinct: Vec<(Key, usize)>,
    /// Per row, its index into `distinct`.
    row_slot: Vec<usize>,
}

/// Key every row of checked `inputs` in place: the distinct keys with the
/// first row of each, and each row's index into them. Only distinct rows
/// are ever copied out later, and only once their count is known to fit
/// the model's `queue`, so memory stays a small multiple of the body
/// however many rows repeat.
fn plan_rows(model: &Model, inputs: &[Tensor], rows: usize, queue: usize) -> Result<RowPlan> {
    let mut distinct: Vec<(Key, usize)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut row_slot: Vec<usize> = Vec::with_capacity(rows);
    for i in 0..rows {
        let key = row_key(model, inputs, i, rows);
        let slot = *index.entry(key.clone()).or_insert_with(|| {
            distinct.push((key, i));
            distinct.len() - 1
        });
        if distinct.len() > queue {
            return Err(Error::BadRequest(format!(
                "the request has more than {queue} distinct rows, the most model `{}` takes per request (its queue)",
                model.name(),
            )));
        }
        row_slot.push(slot);
    }
    Ok(RowPlan { distinct, row_slot })
}

/// Inputs smaller than this are worked on in place: moving them to another
/// thread would cost more than the work.
const INLINE_BYTES: usize = 64 << 10;

/// Run CPU-heavy `work` over `bytes` of input (tokenizing, big JSON) on the
/// blocking pool, so the async workers keep answering other requests
/// meanwhile; small work runs right here.
pub async fn off_runtime<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if bytes < INLINE_BYTES {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Compute(format!("a blocking task failed: {e}")))?
}

/// A request's status from its parts': `Miss` if any part was computed for
/// it, else `Coalesced` if any waited on another's computation, else `Hit`.
fn combined_status(parts: impl Iterator<Item = CacheStatus>) -> CacheStatus {
    parts
        .min_by_key(|s| match s {
            CacheStatus::Miss => 0,
            CacheStatus::Coalesced => 1,
            CacheStatus::Hit(_) => 2,
        })
        .expect("a request has at least one part")
}

/// Row `r` of `rows` of a checked input (first dimension removed), or
/// the whole input when `rows` is 1 and the model does not batch.
fn row_ref<'a>(model: &Model, t: &'a Tensor, r: usize, rows: usize) -> TensorRef<'a> {
    let len = t.data.len() / rows;
    TensorRef {
        name: &t.name,
        datatype: t.datatype.name(),
        shape: if model.batchable {
            &t.shape[1..]
        } else {
            &t.shape
        },
        data: &t.data[r * len..(r + 1) * len],
    }
}

/// Row `r` of `rows` of checked, batchable inputs, sharing their buffers.
fn row_of(inputs: &[Tensor], r: usize, rows: usize) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|t| {
            let len = t.data.len() / rows;
            Tensor {
                name: t.name.clone(),
                datatype: t.datatype,
                shape: t.shape[1..].to_vec(),
                data: t.data.slice(r * len..(r + 1) * len),
            }
        })
        .collect()
}

fn row_key(model: &Model, inputs: &[Tensor], r: usize, rows: usize) -> Key {
    let refs: Vec<TensorRef<'_>> = inputs.iter().map(|t| row_ref(model, t, r, rows)).collect();
    tensor_key(model.namespace, model.name(), &model.digest, &refs)
}

/// Output `index` of the model, rebuilt from rows (stacked along a new first
/// dimension for a batchable model, as is for a whole-request entry).
fn assemble(model: &Arc<Model>, index: usize, rows: &[&Vec<Tensor>]) -> Result<Tensor> {
    let name = &model.outputs[index].name;
    let pick = |row: &Vec<Tensor>| -> Result<Tensor> {
        row.iter()
            .find(|t| &t.name == name)
            .cloned()
            .ok_or_else(|| Error::Storage(format!("a cached row lacks output `{name}`")))
    };
    if !model.batchable {
        return pick(rows[0]);
    }
    let first = pick(rows[0])?;
    let mut data = BytesMut::with_capacity(first.data.len() * rows.len());
    for row in rows {
        let t = pick(row)?;
        if t.shape != first.shape || t.datatype != first.datatype {
            return Err(Error::Compute(format!(
                "rows of output `{name}` differ in shape: {:?} and {:?}",
                first.shape, t.shape
            )));
        }
        data.extend_from_slice(&t.data);
    }
    let mut shape = vec![rows.len() as u64];
    shape.extend_from_slice(&first.shape);
    Ok(Tensor {
        name: name.clone(),
        datatype: first.datatype,
        shape,
        data: data.freeze(),
    })
}
