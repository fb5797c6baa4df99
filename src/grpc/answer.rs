//! A `ModelInfer` answer written straight into its gRPC frame (flag,
//! length, message), for `unary`.
//!
//! The bytes are those prost writes for the message `wire::encode` builds
//! (a test pins them, field for field), without building it: that message
//! costs a dozen allocations (strings, vectors, the `x-cache` map and its
//! hasher) to build, encode and drop on every call, about 6,000
//! instructions of a single-row hit; here the length is counted first and
//! the one buffer written once, with each output's bytes copied from the
//! cache straight into it.

use bytes::{BufMut, Bytes, BytesMut};
use tonic::Status;

use crate::infer::{tensor::Tensor, Response};

/// The message's fixed strings, as `wire::encode` sets them.
const VERSION: &str = "1";
const X_CACHE: &str = "x-cache";

/// The framed `ModelInferResponse` of `response` to request `id` of `model`.
pub fn framed(model: &str, id: &str, response: &Response) -> Result<Bytes, Status> {
    let status = response.status.as_str();
    // parameters: {"x-cache": InferParameter { string_param (3): status }}
    let parameter = field_len(status.len());
    let entry = field_len(X_CACHE.len()) + field_len(parameter);
    let outputs = &response.outputs;
    let len = string_len(model)
        + string_len(VERSION)
        + string_len(id)
        + field_len(entry)
        + outputs
            .iter()
            .map(|t| field_len(tensor_len(t)))
            .sum::<usize>()
        + outputs
            .iter()
            .map(|t| field_len(t.data.len()))
            .sum::<usize>();
    let prefix = u32::try_from(len).map_err(|_| {
        // tonic's words for the same refusal.
        Status::resource_exhausted(format!(
            "Cannot return body with more than 4GB of data but got {len} bytes"
        ))
    })?;
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(prefix);
    string(&mut buf, 1, model);
    string(&mut buf, 2, VERSION);
    string(&mut buf, 3, id);
    head(&mut buf, 4, entry);
    string(&mut buf, 1, X_CACHE);
    head(&mut buf, 2, parameter);
    string(&mut buf, 3, status);
    for t in outputs {
        // InferOutputTensor: name (1), datatype (2), shape (3, packed).
        head(&mut buf, 5, tensor_len(t));
        string(&mut buf, 1, &t.name);
        string(&mut buf, 2, t.datatype.name());
        let dims = dims_len(&t.shape);
        if dims > 0 {
            head(&mut buf, 3, dims);
            for d in &t.shape {
                varint(&mut buf, *d);
            }
        }
    }
    for t in outputs {
        head(&mut buf, 6, t.data.len());
        buf.put_slice(&t.data);
    }
    debug_assert_eq!(buf.len(), 5 + len);
    Ok(buf.freeze())
}

fn tensor_len(t: &Tensor) -> usize {
    let dims = dims_len(&t.shape);
    string_len(&t.name) + string_len(t.datatype.name()) + if dims > 0 { field_len(dims) } else { 0 }
}

/// Packed int64 dimensions (never negative, so plain varints).
fn dims_len(shape: &[u64]) -> usize {
    shape.iter().map(|d| varint_len(*d)).sum()
}

/// A length-delimited field of `len` bytes, key and length included (every
/// tag here is below 16: a one-byte key).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A string field; proto3 leaves an empty one out.
fn string_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(s.len())
    }
}

fn varint_len(v: u64) -> usize {
    // 7 bits a byte; 0 takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The key (`tag`, wire type 2) and length of a length-delimited field.
fn head(buf: &mut BytesMut, tag: u8, len: usize) {
    buf.put_u8(tag << 3 | 2);
    varint(buf, len as u64);
}

fn string(buf: &mut BytesMut, tag: u8, s: &str) {
    if !s.is_empty() {
        head(buf, tag, s.len());
        buf.put_slice(s.as_bytes());
    }
}

fn varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{
        infer::tensor::DataType,
        memo::{CacheStatus, Tier},
    };

    fn tensor(name: &str, datatype: DataType, shape: &[u64], data: &[u8]) -> Tensor {
        Tensor {
            name: name.into(),
            datatype,
            shape: shape.to_vec(),
            data: Bytes::copy_from_slice(data),
        }
    }

    /// Byte for byte what prost writes for `wire::encode`'s message, behind
    /// tonic's prefix: for every status, with and without an id, for no,
    /// one and several outputs, scalar and empty and large shapes.
    #[test]
    fn the_frame_is_prosts_encoding_of_the_message() {
        let big = vec![7u8; 300];
        let outputs = [
            vec![],
            vec![tensor("y", DataType::Fp32, &[1, 4], &[1; 16])],
            vec![
                tensor("a", DataType::Int64, &[], &[2; 8]),
                tensor("long_output_name", DataType::Uint8, &[0, 3], &[]),
                tensor("c", DataType::Fp64, &[300, 1 << 40, 127, 128], &big),
            ],
        ];
        let statuses = [
            CacheStatus::Hit(Tier::Memory),
            CacheStatus::Coalesced,
            CacheStatus::Miss,
        ];
        for outputs in &outputs {
            for status in statuses {
                for id in ["", "request-7", &"i".repeat(200)] {
                    let response = || Response {
                        outputs: outputs.clone(),
                        status,
                    };
                    let message =
                        super::super::wire::encode("mlp", id.into(), response()).encode_to_vec();
                    let mut want = vec![0];
                    want.extend((message.len() as u32).to_be_bytes());
                    want.extend(message);
                    let got = framed("mlp", id, &response()).unwrap();
                    assert_eq!(&got[..], &want[..], "{status:?} {id:?} {outputs:?}");
                }
            }
        }
    }

    #[test]
    fn varint_lengths() {
        for (v, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16383, 2),
            (16384, 3),
            (u64::MAX, 10),
        ] {
            let mut buf = BytesMut::new();
            varint(&mut buf, v);
            assert_eq!((varint_len(v), buf.len()), (len, len), "{v}");
        }
    }
}
