//! Inference: ONNX models through ort, memoized per row.
//!
//! ```text
//! request tensors -> check (registry::Model) -> split into rows
//!   -> per distinct row: key -> memo (hit | coalesced | compute)
//!        compute = batcher (queue, dynamic batch) -> budget (VRAM units)
//!                  -> backend (ort session run on the model's run threads)
//!   -> reassemble the requested outputs in row order
//! ```
//!
//! The fan-out (distinct rows, one lookup each, combined status, reorder)
//! is `memo::many`, shared with the embeddings path (`text.rs`); what is
//! KServe's own is `Rows`: how a row is keyed, computed and reassembled.
//! Keys are built here, next to the inputs they hash (`key.rs`).
//!
//! A batchable model (dynamic first dimension everywhere) is cached per
//! row: a request of 8 rows of which 6 are cached runs 2, identical rows in
//! one request run once, and rows another request is computing are waited
//! on. A model with a fixed first dimension is cached per whole request.

pub mod backend;
pub mod batcher;
pub mod budget;
mod check;
pub mod key;
pub mod metrics;
pub mod registry;
pub mod tensor;
pub mod text;
mod threads;
pub mod tokenize;

use std::{future::Future, sync::Arc};

use bytes::{Bytes, BytesMut};

use self::{
    key::{tensor_key, TensorRef},
    registry::{Model, Registry},
    tensor::{decode_row, encode_row, Tensor},
};
use crate::{
    config::{Live, ModelLive},
    error::{Error, Result},
    memo::{many::Parts, CacheStatus, Lookup, Memo, Policy},
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

/// A request's rows after [`Inference::infer_keyed`] answered it, keyed
/// again only if [`RowKeys::distinct`] is called.
pub struct RowKeys(Arc<Rows>);

impl RowKeys {
    /// The distinct keys of the request's rows (one for a model that does
    /// not batch): the entries its answer was built from. Keys every row
    /// again, so call it only when they are needed (off the async workers
    /// for a big request, see [`RowKeys::input_bytes`]).
    pub fn distinct(&self) -> Vec<Key> {
        let rows = &self.0;
        let mut keys: Vec<Key> = (0..rows.rows).map(|r| rows.key(r)).collect();
        keys.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        keys.dedup();
        keys
    }

    /// The input bytes [`RowKeys::distinct`] hashes.
    pub fn input_bytes(&self) -> usize {
        self.0.bytes()
    }
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
        Ok(self.infer_keyed(model, request).await?.0)
    }

    /// [`Inference::infer`], and the request's rows, for what is built
    /// from their entries (a whole answer kept, ARCHITECTURE.md §1).
    pub async fn infer_keyed(&self, model: &str, request: Request) -> Result<(Response, RowKeys)> {
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
        let parts = Arc::new(Rows {
            model,
            inputs,
            rows,
            wanted,
            queue: settings.queue,
        });
        let (outputs, status) = self.memo.get_or_compute_many(parts.clone(), lookup).await?;
        Ok((Response { outputs, status }, RowKeys(parts)))
    }
}

/// A KServe request's rows, each memoized on its own (or the whole request,
/// for a model that does not batch).
struct Rows {
    model: Arc<Model>,
    /// Checked inputs; only distinct rows are ever copied out of them, and
    /// only once their count is known to fit the model's `queue`, so memory
    /// stays a small multiple of the body however many rows repeat.
    inputs: Vec<Tensor>,
    rows: usize,
    /// Indices of the requested outputs.
    wanted: Vec<usize>,
    queue: usize,
}

impl Parts for Rows {
    type Part = Vec<Tensor>;
    type Whole = Vec<Tensor>;

    fn count(&self) -> usize {
        self.rows
    }

    fn bytes(&self) -> usize {
        // Keying and reassembly cost about a key per row plus the bytes.
        let data: usize = self.inputs.iter().map(|t| t.data.len()).sum();
        data + self.rows.saturating_mul(64)
    }

    fn key(&self, r: usize) -> Key {
        let (model, rows) = (&self.model, self.rows);
        let refs: Vec<TensorRef<'_>> = self
            .inputs
            .iter()
            .map(|t| row_ref(model, t, r, rows))
            .collect();
        tensor_key(model.namespace, model.name(), &model.digest, &refs)
    }

    fn check_distinct(&self, distinct: usize) -> Result<()> {
        if distinct <= self.queue {
            return Ok(());
        }
        Err(Error::BadRequest(format!(
            "the request has more than {} distinct rows, the most model `{}` takes per request (its queue)",
            self.queue,
            self.model.name(),
        )))
    }

    fn compute(self: Arc<Self>, r: usize) -> impl Future<Output = Result<Bytes>> + Send + 'static {
        let row = if self.model.batchable {
            row_of(&self.inputs, r, self.rows)
        } else {
            self.inputs.clone()
        };
        let model = self.model.clone();
        async move { model.batcher.run(row).await.map(|out| encode_row(&out)) }
    }

    fn decode(&self, value: &Bytes) -> Result<Vec<Tensor>> {
        decode_row(value)
    }

    fn assemble(&self, per_row: Vec<&Vec<Tensor>>) -> Result<Vec<Tensor>> {
        self.wanted
            .iter()
            .map(|&o| assemble(&self.model, o, &per_row))
            .collect()
    }
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
