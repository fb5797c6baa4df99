//! Tensors in canonical form: a KServe datatype, a shape and raw
//! little-endian element bytes.
//!
//! Every encoding a request can use (KServe JSON, Triton's binary
//! extension) is decoded into [`Tensor`] first; keys, the batcher and the
//! model backend see only this form. One row's outputs are stored in the
//! cache as [`encode_row`] bytes, a small self-describing format.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// Element types we accept (KServe names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp32,
    Fp64,
}

const ALL: [DataType; 11] = [
    DataType::Bool,
    DataType::Uint8,
    DataType::Uint16,
    DataType::Uint32,
    DataType::Uint64,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::Fp32,
    DataType::Fp64,
];

impl DataType {
    /// The KServe / Triton name, e.g. `FP32`.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
        }
    }

    pub fn from_name(name: &str) -> Result<DataType> {
        ALL.into_iter().find(|d| d.name() == name).ok_or_else(|| {
            Error::BadRequest(format!(
                "unsupported datatype `{name}`; supported: {}",
                ALL.map(DataType::name).join(", ")
            ))
        })
    }

    /// Bytes per element (BOOL is one byte, 0 or 1).
    pub fn size(self) -> usize {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
        }
    }

    fn code(self) -> u8 {
        ALL.iter().position(|d| *d == self).expect("listed") as u8
    }

    fn from_code(code: u8) -> Option<DataType> {
        ALL.get(usize::from(code)).copied()
    }
}

/// A named tensor in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<u64>,
    /// Little-endian elements, row-major; `len == elements * size`.
    pub data: Bytes,
}

impl Tensor {
    /// Number of elements the shape declares, or `None` on overflow.
    pub fn elements(shape: &[u64]) -> Option<u64> {
        shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d))
    }

    /// Input `name`'s shape as a request declares it, checked before
    /// anything is allocated: no negative dimension, and at most
    /// `max_bytes` of `datatype`. Returns the shape and its element count.
    pub fn declared(
        name: &str,
        datatype: DataType,
        dims: &[i64],
        max_bytes: u64,
    ) -> Result<(Vec<u64>, u64)> {
        let shape = dims
            .iter()
            .map(|d| u64::try_from(*d))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| {
                Error::BadRequest(format!("input `{name}`: negative dimension in {dims:?}"))
            })?;
        let elements = Tensor::elements(&shape)
            .filter(|n| {
                n.checked_mul(datatype.size() as u64)
                    .is_some_and(|b| b <= max_bytes)
            })
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "input `{name}`: shape {shape:?} declares more than max_request_size ({max_bytes} bytes)"
                ))
            })?;
        Ok((shape, elements))
    }
}

/// Serialize one row's outputs (the cached value of a row).
pub fn encode_row(outputs: &[Tensor]) -> Bytes {
    let size: usize = outputs
        .iter()
        .map(|t| 16 + t.name.len() + 8 * t.shape.len() + t.data.len())
        .sum();
    let mut out = BytesMut::with_capacity(2 + size);
    out.put_u16_le(outputs.len() as u16);
    for t in outputs {
        out.put_u16_le(t.name.len() as u16);
        out.put_slice(t.name.as_bytes());
        out.put_u8(t.datatype.code());
        out.put_u8(t.shape.len() as u8);
        for d in &t.shape {
            out.put_u64_le(*d);
        }
        out.put_u64_le(t.data.len() as u64);
        out.put_slice(&t.data);
    }
    out.freeze()
}

/// Parse [`encode_row`] bytes; the slices share `bytes`' buffer.
pub fn decode_row(bytes: &Bytes) -> Result<Vec<Tensor>> {
    let corrupt = || Error::Storage("corrupt cached row".into());
    let mut buf = bytes.clone();
    let need = |buf: &Bytes, n: usize| {
        if buf.remaining() < n {
            Err(corrupt())
        } else {
            Ok(())
        }
    };
    need(&buf, 2)?;
    let count = buf.get_u16_le();
    let mut outputs = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        need(&buf, 2)?;
        let name_len = usize::from(buf.get_u16_le());
        need(&buf, name_len + 2)?;
        let name = String::from_utf8(buf.split_to(name_len).to_vec()).map_err(|_| corrupt())?;
        let datatype = DataType::from_code(buf.get_u8()).ok_or_else(corrupt)?;
        let rank = usize::from(buf.get_u8());
        need(&buf, 8 * rank + 8)?;
        let shape = (0..rank).map(|_| buf.get_u64_le()).collect();
        let len = usize::try_from(buf.get_u64_le()).map_err(|_| corrupt())?;
        need(&buf, len)?;
        let data = buf.split_to(len);
        outputs.push(Tensor {
            name,
            datatype,
            shape,
            data,
        });
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in ALL {
            assert_eq!(DataType::from_name(d.name()).unwrap(), d);
            assert_eq!(DataType::from_code(d.code()), Some(d));
        }
        assert!(DataType::from_name("BYTES").is_err());
    }

    #[test]
    fn rows_round_trip_and_truncation_is_caught() {
        let row = vec![
            Tensor {
                name: "y".into(),
                datatype: DataType::Fp32,
                shape: vec![4],
                data: Bytes::from(vec![1u8; 16]),
            },
            Tensor {
                name: "count".into(),
                datatype: DataType::Int64,
                shape: vec![],
                data: Bytes::from(vec![2u8; 8]),
            },
        ];
        let bytes = encode_row(&row);
        assert_eq!(decode_row(&bytes).unwrap(), row);
        for cut in 0..bytes.len() {
            assert!(decode_row(&bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
    }
}
