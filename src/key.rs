//! blake3 keys for computed results (DESIGN §2).
//!
//! `key = blake3_derive_key(DOMAIN, kind || namespace || model digest ||
//! canonical input || parameters)`, with every variable-length field
//! length-prefixed, so no two different inputs can produce the same byte
//! stream. The namespace hashed is the model's *name* (portable across
//! servers); the [`Key::namespace`] number is only this server's disk
//! grouping id for it.
//!
//! Canonical tensor encoding: datatype, shape and the raw little-endian
//! element bytes. JSON and binary request encodings are decoded to that
//! form first, so both give the same key. The golden tests at the bottom pin
//! the format: changing any byte here silently orphans every stored entry.

use crate::store::Key;

/// Domain-separation context for every key infercache derives.
const DOMAIN: &str = "infercache 2026-11-26 result key v1";

/// blake3 digest of a model file's bytes: a new model never serves old
/// results.
pub type ModelDigest = [u8; 32];

/// Builds one key from tagged, length-prefixed fields.
pub struct KeyBuilder {
    hasher: blake3::Hasher,
    namespace: u32,
}

impl KeyBuilder {
    /// Start a key of `kind` (e.g. "tensor", "text") for the model called
    /// `name`, whose disk namespace is `namespace`.
    pub fn new(kind: &str, namespace: u32, name: &str, digest: &ModelDigest) -> KeyBuilder {
        let mut builder = KeyBuilder {
            hasher: blake3::Hasher::new_derive_key(DOMAIN),
            namespace,
        };
        builder.bytes(kind.as_bytes());
        builder.bytes(name.as_bytes());
        builder.hasher.update(digest);
        builder
    }

    /// Append a variable-length field.
    pub fn bytes(&mut self, field: &[u8]) -> &mut Self {
        self.hasher.update(&(field.len() as u64).to_le_bytes());
        self.hasher.update(field);
        self
    }

    /// Append a fixed-width number.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.hasher.update(&value.to_le_bytes());
        self
    }

    /// Append one tensor in canonical form.
    pub fn tensor(&mut self, tensor: &TensorRef<'_>) -> &mut Self {
        self.bytes(tensor.name.as_bytes());
        self.bytes(tensor.datatype.as_bytes());
        self.u64(tensor.shape.len() as u64);
        for dim in tensor.shape {
            self.u64(*dim);
        }
        self.bytes(tensor.data)
    }

    pub fn finish(&self) -> Key {
        Key::new(self.namespace, self.hasher.finalize().as_bytes())
    }
}

/// A tensor in canonical form: KServe datatype name, shape, little-endian
/// element bytes.
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: &'a [u64],
    pub data: &'a [u8],
}

/// How a text embedding is produced; part of a text key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextParams {
    pub max_tokens: u32,
    pub pooling: &'static str,
    pub normalize: bool,
}

/// Key of one inference row: the requested outputs and the row's inputs.
pub fn tensor_key(
    namespace: u32,
    model: &str,
    digest: &ModelDigest,
    outputs: &[&str],
    inputs: &[TensorRef<'_>],
) -> Key {
    let mut key = KeyBuilder::new("tensor", namespace, model, digest);
    key.u64(outputs.len() as u64);
    for output in outputs {
        key.bytes(output.as_bytes());
    }
    key.u64(inputs.len() as u64);
    for input in inputs {
        key.tensor(input);
    }
    key.finish()
}

/// Key of one text embedding.
pub fn text_key(
    namespace: u32,
    model: &str,
    digest: &ModelDigest,
    text: &str,
    params: &TextParams,
) -> Key {
    let mut key = KeyBuilder::new("text", namespace, model, digest);
    key.bytes(text.as_bytes())
        .u64(u64::from(params.max_tokens))
        .bytes(params.pooling.as_bytes())
        .u64(u64::from(params.normalize));
    key.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: ModelDigest = [7; 32];
    const PARAMS: TextParams = TextParams {
        max_tokens: 256,
        pooling: "mean",
        normalize: true,
    };

    fn hex(key: &Key) -> String {
        key.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn row<'a>(datatype: &'a str, shape: &'a [u64], data: &'a [u8]) -> TensorRef<'a> {
        TensorRef {
            name: "x",
            datatype,
            shape,
            data,
        }
    }

    fn one(t: TensorRef<'_>) -> Key {
        tensor_key(1, "mlp", &DIGEST, &["y"], &[t])
    }

    #[test]
    fn golden_keys_do_not_drift() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(
            hex(&one(row("FP32", &[4], &data))),
            "3c44147b142b8bbfea99fd3fc44f77c7194f8acd90bebcc50c6f92f1afb4caf7"
        );
        assert_eq!(
            hex(&text_key(
                2,
                "minilm",
                &DIGEST,
                "A man is eating food.",
                &PARAMS
            )),
            "49a93b9adec2155d51de018d6ece3094271460ee252aa1b48a4d1bae2e680762"
        );
    }

    #[test]
    fn any_difference_changes_the_key() {
        let data = [0u8, 0, 128, 63, 0, 0, 0, 64];
        let base = one(row("FP32", &[2], &data));
        assert_eq!(base, one(row("FP32", &[2], &data)), "deterministic");
        assert_eq!(base.namespace, 1);
        let variants = [
            one(row("INT32", &[2], &data)),
            one(row("FP32", &[1, 2], &data)),
            one(row("FP32", &[2], &[0, 0, 128, 63, 0, 0, 0, 65])),
            tensor_key(1, "mlp", &[8; 32], &["y"], &[row("FP32", &[2], &data)]),
            tensor_key(1, "mlp2", &DIGEST, &["y"], &[row("FP32", &[2], &data)]),
            tensor_key(1, "mlp", &DIGEST, &["z"], &[row("FP32", &[2], &data)]),
            tensor_key(1, "mlp", &DIGEST, &[], &[row("FP32", &[2], &data)]),
        ];
        for v in &variants {
            assert_ne!(base.id, v.id);
        }
        let text = text_key(2, "m", &DIGEST, "hi", &PARAMS);
        for params in [
            TextParams {
                max_tokens: 128,
                ..PARAMS
            },
            TextParams {
                pooling: "cls",
                ..PARAMS
            },
            TextParams {
                normalize: false,
                ..PARAMS
            },
        ] {
            assert_ne!(text.id, text_key(2, "m", &DIGEST, "hi", &params).id);
        }
        assert_ne!(text.id, text_key(2, "m", &DIGEST, "hi ", &PARAMS).id);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // "ab" + "c" must differ from "a" + "bc".
        let a = tensor_key(0, "m", &DIGEST, &["ab", "c"], &[]);
        let b = tensor_key(0, "m", &DIGEST, &["a", "bc"], &[]);
        assert_ne!(a.id, b.id);
    }
}
