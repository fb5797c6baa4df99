//! blake3 keys for computed results (ARCHITECTURE.md §2).
//!
//! A key is two blake3 calls:
//! `header_key = keyed_hash(derive_key(DOMAIN), header)` over the small
//! fields (kind, model name and digest, outputs, tensor names, datatypes,
//! shapes, payload lengths, parameters; each length-prefixed or fixed-width),
//! then `key = keyed_hash(header_key, payload)` over the large input bytes.
//! Distinct headers give distinct hash keys, and the header fixes every
//! payload's length, so no two different inputs share a byte stream. Split
//! this way a 1 KiB row costs one header block plus exactly one blake3 chunk
//! instead of spilling a second chunk.
//!
//! The namespace hashed is the model's *name* (portable across servers); the
//! [`Key::namespace`] number is only this server's disk grouping id for it.
//!
//! Canonical tensor encoding: datatype, shape and the raw little-endian
//! element bytes. JSON and binary request encodings are decoded to that
//! form first, so both give the same key. The golden tests at the bottom pin
//! the format: changing any byte here silently orphans every stored entry.

use crate::store::Key;

/// Domain-separation context for every key infercache derives.
const DOMAIN: &str = "infercache 2026-11-26 result key v1";

/// The keyed-hash key derived from [`DOMAIN`] once, so starting a key costs
/// no extra compression (`blake3::derive_key(DOMAIN, b"")`).
static DOMAIN_KEY: std::sync::LazyLock<[u8; 32]> =
    std::sync::LazyLock::new(|| blake3::derive_key(DOMAIN, b""));

/// blake3 digest of a model file's bytes: a new model never serves old
/// results.
pub type ModelDigest = [u8; 32];

/// Builds one key from header fields and payload slices.
pub struct KeyBuilder<'a> {
    header: Vec<u8>,
    payload: Vec<&'a [u8]>,
    namespace: u32,
}

impl<'a> KeyBuilder<'a> {
    /// Start a key of `kind` (e.g. "tensor", "text") for the model called
    /// `name`, whose disk namespace is `namespace`.
    pub fn new(kind: &str, namespace: u32, name: &str, digest: &ModelDigest) -> KeyBuilder<'a> {
        let mut builder = KeyBuilder {
            header: Vec::with_capacity(160),
            payload: Vec::new(),
            namespace,
        };
        builder.bytes(kind.as_bytes());
        builder.bytes(name.as_bytes());
        builder.header.extend_from_slice(digest);
        builder
    }

    /// Append a small variable-length field to the header.
    pub fn bytes(&mut self, field: &[u8]) -> &mut Self {
        self.u64(field.len() as u64);
        self.header.extend_from_slice(field);
        self
    }

    /// Append a fixed-width number to the header.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.header.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Append a large field: its length goes to the header, its bytes to
    /// the payload.
    pub fn payload(&mut self, data: &'a [u8]) -> &mut Self {
        self.u64(data.len() as u64);
        self.payload.push(data);
        self
    }

    /// Append one tensor in canonical form.
    pub fn tensor(&mut self, tensor: &TensorRef<'a>) -> &mut Self {
        self.bytes(tensor.name.as_bytes());
        self.bytes(tensor.datatype.as_bytes());
        self.u64(tensor.shape.len() as u64);
        for dim in tensor.shape {
            self.u64(*dim);
        }
        self.payload(tensor.data)
    }

    pub fn finish(&self) -> Key {
        let header_key = blake3::keyed_hash(&DOMAIN_KEY, &self.header);
        let mut hasher = blake3::Hasher::new_keyed(header_key.as_bytes());
        for data in &self.payload {
            hasher.update(data);
        }
        Key::new(self.namespace, hasher.finalize().as_bytes())
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextParams {
    pub max_tokens: u32,
    pub pooling: &'static str,
    pub normalize: bool,
    /// blake3 digest of the tokenizer file's bytes.
    pub tokenizer: [u8; 32],
    /// The tokenizer settings the server applies over the file's own
    /// (padding, truncation), in a canonical text form.
    pub overrides: String,
}

/// Key of one inference row (or of a whole request to a model that does
/// not batch): the model and the row's inputs. Outputs are not part of it:
/// a run computes all of them and the entry keeps them all, so any subset
/// is answered from one entry.
pub fn tensor_key<'a>(
    namespace: u32,
    model: &str,
    digest: &ModelDigest,
    inputs: &[TensorRef<'a>],
) -> Key {
    let mut key = KeyBuilder::new("tensor", namespace, model, digest);
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
    key.u64(u64::from(params.max_tokens))
        .bytes(params.pooling.as_bytes())
        .u64(u64::from(params.normalize))
        .bytes(&params.tokenizer)
        .bytes(params.overrides.as_bytes())
        .payload(text.as_bytes());
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
        tokenizer: [9; 32],
        overrides: String::new(),
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
        tensor_key(1, "mlp", &DIGEST, &[t])
    }

    #[test]
    fn golden_keys_do_not_drift() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(
            hex(&one(row("FP32", &[4], &data))),
            "c705937d39a4284cd880a7b40f3623d86849e85e5045cdeb14c9e794e0f7f332"
        );
        assert_eq!(
            hex(&text_key(
                2,
                "minilm",
                &DIGEST,
                "A man is eating food.",
                &PARAMS
            )),
            "7ab8aaf770d74019c733e5028e5b1223e8e9f1e84b5956ea949c7fb255a12adf"
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
            tensor_key(1, "mlp", &[8; 32], &[row("FP32", &[2], &data)]),
            tensor_key(1, "mlp2", &DIGEST, &[row("FP32", &[2], &data)]),
            tensor_key(
                1,
                "mlp",
                &DIGEST,
                &[TensorRef {
                    name: "z",
                    ..row("FP32", &[2], &data)
                }],
            ),
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
            TextParams {
                tokenizer: [10; 32],
                ..PARAMS
            },
            TextParams {
                overrides: "{\"padding\":null}".into(),
                ..PARAMS
            },
        ] {
            assert_ne!(text.id, text_key(2, "m", &DIGEST, "hi", &params).id);
        }
        assert_ne!(text.id, text_key(2, "m", &DIGEST, "hi ", &PARAMS).id);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // Payloads "ab" + "c" must differ from "a" + "bc".
        let t = |name, data| TensorRef {
            name,
            datatype: "UINT8",
            shape: &[],
            data,
        };
        let a = tensor_key(0, "m", &DIGEST, &[t("p", b"ab"), t("q", b"c")]);
        let b = tensor_key(0, "m", &DIGEST, &[t("p", b"a"), t("q", b"bc")]);
        assert_ne!(a.id, b.id);
    }
}
