//! The per-text memoized embed path behind `/v1/embeddings`.
//!
//! Each distinct text is one cache entry, keyed by the model digest, the
//! exact text and everything that shapes its vector: the tokenizer file's
//! digest, the tokenizer settings the server overrides (padding off,
//! truncation at `max_tokens`), pooling and normalization. A miss tokenizes
//! the text on the blocking pool (at most one tokenization per core at a
//! time, so a huge request cannot starve the async workers), sends its row
//! to the model's batcher, which pads each batch only to its own longest
//! text, and pools the token vectors of the real tokens ([`TextModel`]).
//!
//! A cached value is the token count (u32 LE, for `usage`) followed by the
//! vector as f32 LE.

use std::{
    future::Future,
    sync::{Arc, LazyLock},
};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Semaphore;

use super::{key::text_key, registry::Model, tokenize::TextModel, Inference};
use crate::{
    blocking::off_runtime,
    error::{Error, Result},
    memo::{many::Parts, CacheStatus, Policy},
    store::Key,
};

/// One request's embeddings, in input order.
pub struct Embeddings {
    pub vectors: Vec<Bytes>,
    pub tokens: usize,
    pub status: CacheStatus,
}

/// Tokenizations running at once, on the blocking pool: one core fewer
/// than the machine has (at least one), so that tokenizing a huge request
/// never takes every core from the async workers and the model.
static TOKENIZING: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Semaphore::new(cores.saturating_sub(1).max(1))
});

fn encode_value(tokens: usize, vector: &[f32]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + 4 * vector.len());
    out.put_u32_le(tokens as u32);
    for v in vector {
        out.put_f32_le(*v);
    }
    out.freeze()
}

/// (token count, vector as f32 LE bytes)
fn decode_value(value: &Bytes) -> Result<(usize, Bytes)> {
    if value.len() < 4 || !value.len().is_multiple_of(4) {
        return Err(Error::Storage("corrupt cached embedding".into()));
    }
    let tokens = u32::from_le_bytes(value[..4].try_into().expect("4 bytes"));
    Ok((tokens as usize, value.slice(4..)))
}

impl Inference {
    /// Embed `texts` with the text model `model`, each text memoized.
    pub async fn embed(
        &self,
        model: &str,
        texts: Vec<String>,
        policy: Policy,
    ) -> Result<Embeddings> {
        let model = self.registry.get(model)?;
        if model.text.is_none() {
            return Err(Error::BadRequest(format!(
                "model `{}` is not a text model (configure `tokenizer` for it)",
                model.name()
            )));
        }
        if texts.is_empty() {
            return Err(Error::BadRequest("input must not be empty".into()));
        }
        let (lookup, settings) = self.lookup(&model, policy);
        if texts.len() > settings.max_inputs {
            return Err(Error::BadRequest(format!(
                "input has {} texts; at most {} per request",
                texts.len(),
                settings.max_inputs
            )));
        }
        if let Some(i) = texts.iter().position(String::is_empty) {
            return Err(Error::BadRequest(format!("input[{i}] is an empty string")));
        }
        // Equal texts get equal keys, so they are looked up (and computed)
        // once.
        let parts = Arc::new(Texts { model, texts });
        let ((vectors, tokens), status) = self.memo.get_or_compute_many(parts, lookup).await?;
        Ok(Embeddings {
            vectors,
            tokens,
            status,
        })
    }
}

/// An embeddings request's texts, each memoized on its own.
struct Texts {
    /// A text model (checked by `embed`).
    model: Arc<Model>,
    texts: Vec<String>,
}

impl Texts {
    fn text_model(&self) -> &TextModel {
        self.model.text.as_ref().expect("checked by embed")
    }
}

impl Parts for Texts {
    /// (token count, vector as f32 LE bytes)
    type Part = (usize, Bytes);
    /// (vectors in input order, total tokens)
    type Whole = (Vec<Bytes>, usize);

    fn count(&self) -> usize {
        self.texts.len()
    }

    fn bytes(&self) -> usize {
        // Keying hashes every byte of every text.
        self.texts.iter().map(String::len).sum()
    }

    fn key(&self, i: usize) -> Key {
        let (model, params) = (&self.model, &self.text_model().params);
        text_key(
            model.namespace,
            model.name(),
            &model.digest,
            &self.texts[i],
            params,
        )
    }

    fn check_distinct(&self, _: usize) -> Result<()> {
        // `embed` bounds the texts themselves (`max_inputs`).
        Ok(())
    }

    fn compute(self: Arc<Self>, i: usize) -> impl Future<Output = Result<Bytes>> + Send + 'static {
        compute(self, i)
    }

    fn decode(&self, value: &Bytes) -> Result<(usize, Bytes)> {
        decode_value(value)
    }

    fn assemble(&self, parts: Vec<&(usize, Bytes)>) -> Result<(Vec<Bytes>, usize)> {
        let vectors = parts.iter().map(|(_, vector)| vector.clone()).collect();
        Ok((vectors, parts.iter().map(|(tokens, _)| tokens).sum()))
    }
}

/// Embed text `i` (the texts are shared, so that none is copied on the
/// way).
async fn compute(texts: Arc<Texts>, i: usize) -> Result<Bytes> {
    let permit = TOKENIZING
        .acquire()
        .await
        .expect("the tokenizing semaphore is never closed");
    let tokenizing = texts.clone();
    let (row, len) = off_runtime(usize::MAX, move || {
        let model = &tokenizing.model;
        tokenizing
            .text_model()
            .row(&tokenizing.texts[i], &model.inputs)
    })
    .await?;
    drop(permit);
    let outputs = texts.model.batcher.run(row).await?;
    let vector = texts.text_model().pool(&outputs[0], len)?;
    Ok(encode_value(len, &vector))
}
