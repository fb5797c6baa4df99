//! Text models' tokenizer and pooling: a text becomes a model input row,
//! and the model's token vectors become one vector.
//!
//! The tokenizer settings the server overrides (padding off, truncation at
//! `max_tokens`), pooling and normalization all shape a vector, so they go
//! into every text key ([`TextParams`]).
//!
//! A long text is tokenized from a prefix first (see [`TextModel::encode`]):
//! truncation would drop the rest anyway, and tokenizing 30 KB to keep 256
//! tokens is most of a request's CPU time.

use std::path::Path;

use bytes::Bytes;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::{
    backend::IoSpec,
    key::TextParams,
    tensor::{DataType, Tensor},
};
use crate::{
    config::{ModelConfig, Pooling},
    error::{Error, Result},
};

/// A loaded tokenizer plus how the model's outputs become one vector.
pub struct TextModel {
    tokenizer: Tokenizer,
    /// What goes into every key of this model's texts.
    pub(crate) params: TextParams,
    pooling: Pooling,
}

const IDS: &str = "input_ids";
const MASK: &str = "attention_mask";
const TYPES: &str = "token_type_ids";

/// Bytes of text tokenized per allowed token before the whole text is:
/// English runs about 4-6 bytes per token, so a prefix of this size almost
/// always holds `max_tokens` complete words' tokens.
const PREFIX_BYTES_PER_TOKEN: usize = 16;

impl TextModel {
    /// Load `config.tokenizer` and check that the model takes token ids.
    pub fn load(
        config: &ModelConfig,
        path: &Path,
        inputs: &[IoSpec],
        outputs: &[IoSpec],
    ) -> Result<TextModel> {
        let refuse =
            |why: String| Error::Unavailable(format!("text model `{}`: {why}", config.name));
        let bytes = std::fs::read(path)
            .map_err(|e| refuse(format!("cannot read tokenizer {}: {e}", path.display())))?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|e| refuse(format!("cannot load tokenizer {}: {e}", path.display())))?;
        let truncation = TruncationParams {
            max_length: config.max_tokens,
            ..TruncationParams::default()
        };
        // What the server sets over the file's own settings, as it goes
        // into every key: changing any of it must not serve old vectors.
        let overrides = overrides(&truncation);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| refuse(format!("cannot set truncation: {e}")))?;
        for spec in inputs {
            let known = [IDS, MASK, TYPES].contains(&spec.name.as_str());
            if !known || spec.datatype != DataType::Int64 || spec.shape.len() != 2 {
                return Err(refuse(format!(
                    "input `{}` ({} {:?}) is not one of {IDS}, {MASK}, {TYPES} as INT64 [batch, tokens]",
                    spec.name,
                    spec.datatype.name(),
                    spec.shape
                )));
            }
        }
        if !inputs.iter().any(|s| s.name == IDS) {
            return Err(refuse(format!("the model has no `{IDS}` input")));
        }
        let first = outputs
            .first()
            .ok_or_else(|| refuse("the model has no output".into()))?;
        if first.datatype != DataType::Fp32 || !(2..=3).contains(&first.shape.len()) {
            return Err(refuse(format!(
                "output `{}` must be FP32 [batch, tokens, dim] or [batch, dim]",
                first.name
            )));
        }
        Ok(TextModel {
            tokenizer,
            params: TextParams {
                max_tokens: config.max_tokens as u32,
                pooling: config.pooling.as_str(),
                normalize: config.normalize,
                tokenizer: *blake3::hash(&bytes).as_bytes(),
                overrides,
            },
            pooling: config.pooling,
        })
    }

    /// The model's input row for `text`, in the model's input order, and
    /// its token count.
    pub(crate) fn row(&self, text: &str, inputs: &[IoSpec]) -> Result<(Vec<Tensor>, usize)> {
        let encoding = self.encode(text)?;
        let len = encoding.get_ids().len();
        let ints = |values: &[u32]| -> Bytes {
            values
                .iter()
                .flat_map(|v| i64::from(*v).to_le_bytes())
                .collect::<Vec<u8>>()
                .into()
        };
        let row = inputs
            .iter()
            .map(|spec| Tensor {
                name: spec.name.clone(),
                datatype: DataType::Int64,
                shape: vec![len as u64],
                data: match spec.name.as_str() {
                    IDS => ints(encoding.get_ids()),
                    MASK => ints(encoding.get_attention_mask()),
                    _ => ints(encoding.get_type_ids()),
                },
            })
            .collect();
        Ok((row, len))
    }

    /// `text` tokenized and truncated at `max_tokens`, tokenizing only a
    /// prefix when that provably gives the same tokens.
    ///
    /// Why the prefix is exact: the normalizer and pre-tokenizer of the
    /// tokenizers we serve (BERT, Metaspace, byte-level BPE) act within
    /// whitespace-delimited words, so every word that ends before the
    /// prefix's last whitespace gets the same tokens in the prefix as in
    /// the whole text; only the word the cut goes through may differ. If
    /// the prefix alone already fills `max_tokens` and every kept token
    /// ends before that last whitespace, the whole text has at least as
    /// many tokens and truncation keeps exactly these. Otherwise (few long
    /// words, no whitespace) the whole text is tokenized, as before.
    fn encode(&self, text: &str) -> Result<Encoding> {
        let tokenize = |t: &str| {
            self.tokenizer
                .encode(t, true)
                .map_err(|e| Error::BadRequest(format!("cannot tokenize the text: {e}")))
        };
        let max_tokens = self.params.max_tokens as usize;
        let bound = max_tokens.saturating_mul(PREFIX_BYTES_PER_TOKEN);
        if text.len() <= bound {
            return tokenize(text);
        }
        let prefix = &text[..text.floor_char_boundary(bound)];
        if let Some((last_space, _)) = prefix.char_indices().rfind(|(_, c)| c.is_whitespace()) {
            let encoding = tokenize(prefix)?;
            let kept_end = encoding
                .get_offsets()
                .iter()
                .map(|o| o.1)
                .max()
                .unwrap_or(0);
            if encoding.get_ids().len() >= max_tokens && kept_end <= last_space {
                return Ok(encoding);
            }
        }
        tokenize(text)
    }

    /// Refuse KServe rows longer than `max_tokens`: the model was set up
    /// (and its batches sized) for at most that many tokens per row.
    pub fn check_tokens(&self, inputs: &[Tensor]) -> Result<()> {
        let max = u64::from(self.params.max_tokens);
        match inputs
            .iter()
            .find(|t| t.shape.get(1).is_some_and(|n| *n > max))
        {
            Some(t) => Err(Error::BadRequest(format!(
                "input `{}` has {} tokens per row; this model takes at most {max} (max_tokens)",
                t.name, t.shape[1]
            ))),
            None => Ok(()),
        }
    }

    /// One vector from a row's first output: pooled over the first `len`
    /// token vectors (the rest is batch padding), then normalized.
    pub(crate) fn pool(&self, output: &Tensor, len: usize) -> Result<Vec<f32>> {
        let floats: Vec<f32> = output
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let mut vector = match output.shape.len() {
            1 => floats,
            2 => {
                let dim = output.shape[1] as usize;
                if len == 0 || floats.len() < len * dim {
                    return Err(Error::Compute(format!(
                        "output {:?} is shorter than {len} tokens",
                        output.shape
                    )));
                }
                match self.pooling {
                    Pooling::Cls => floats[..dim].to_vec(),
                    Pooling::Mean => {
                        let mut sum = vec![0f32; dim];
                        for token in floats[..len * dim].chunks_exact(dim) {
                            sum.iter_mut().zip(token).for_each(|(s, v)| *s += v);
                        }
                        sum.iter().map(|s| s / len as f32).collect()
                    }
                }
            }
            _ => {
                return Err(Error::Compute(format!(
                    "unexpected output shape {:?}",
                    output.shape
                )))
            }
        };
        if self.params.normalize {
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            vector.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(vector)
    }
}

/// The tokenizer settings the server applies, canonically: padding off and
/// `truncation`. Keys hash this text, so its form is pinned by a test.
fn overrides(truncation: &TruncationParams) -> String {
    serde_json::json!({ "padding": null, "truncation": truncation }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_have_a_pinned_form() {
        let truncation = TruncationParams {
            max_length: 256,
            ..TruncationParams::default()
        };
        assert_eq!(
            overrides(&truncation),
            r#"{"padding":null,"truncation":{"direction":"Right","max_length":256,"strategy":"LongestFirst","stride":0}}"#
        );
    }
}
