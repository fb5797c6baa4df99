//! Bit-exact conversion between canonical [`Tensor`]s (little-endian
//! bytes) and ort's typed tensors, for every [`DataType`].

use bytes::Bytes;
use ort::session::SessionInputValue;
use ort::value::{DynValue, PrimitiveTensorElementType, TensorElementType, TensorRef, ValueType};

use crate::infer::tensor::{DataType, Tensor};

/// Our datatype for an ort element type, if we support it.
pub(super) fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        _ => return None,
    })
}

/// Whether `t.data` holds exactly the elements its shape declares.
pub(super) fn check_len(t: &Tensor) -> std::result::Result<(), String> {
    let bytes = ort_shape(&t.shape)
        .and_then(|(_, elements)| elements.checked_mul(t.datatype.size()))
        .ok_or_else(|| {
            format!(
                "input `{}` has an impossibly large shape {:?}",
                t.name, t.shape
            )
        })?;
    if bytes == t.data.len() {
        Ok(())
    } else {
        Err(format!(
            "input `{}` has {} data bytes but shape {:?} of {} needs {bytes}",
            t.name,
            t.data.len(),
            t.shape,
            t.datatype.name()
        ))
    }
}

/// The shape as ort takes it, and its element count; `None` if a dimension
/// or the count (or any partial product, which ort computes unchecked)
/// overflows.
pub(super) fn ort_shape(shape: &[u64]) -> Option<(Vec<i64>, usize)> {
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).ok())
        .collect::<Option<Vec<i64>>>()?;
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
    Some((dims, elements))
}

/// Run `$body` with `$t` bound to the Rust element type of `$datatype`.
macro_rules! with_element {
    ($datatype:expr, $t:ident => $body:expr) => {
        match $datatype {
            DataType::Bool => {
                type $t = bool;
                $body
            }
            DataType::Uint8 => {
                type $t = u8;
                $body
            }
            DataType::Uint16 => {
                type $t = u16;
                $body
            }
            DataType::Uint32 => {
                type $t = u32;
                $body
            }
            DataType::Uint64 => {
                type $t = u64;
                $body
            }
            DataType::Int8 => {
                type $t = i8;
                $body
            }
            DataType::Int16 => {
                type $t = i16;
                $body
            }
            DataType::Int32 => {
                type $t = i32;
                $body
            }
            DataType::Int64 => {
                type $t = i64;
                $body
            }
            DataType::Fp32 => {
                type $t = f32;
                $body
            }
            DataType::Fp64 => {
                type $t = f64;
                $body
            }
        }
    };
}

/// A checked canonical tensor as an ort input. UINT8 is borrowed as is;
/// other types are decoded into an owned, aligned buffer that ort takes
/// without a further copy.
pub(super) fn to_ort(t: &Tensor) -> std::result::Result<SessionInputValue<'_>, String> {
    let (shape, _) = ort_shape(&t.shape).ok_or("shape overflows")?;
    let value = if t.datatype == DataType::Uint8 {
        TensorRef::from_array_view((shape, &t.data[..])).map(SessionInputValue::from)
    } else {
        with_element!(t.datatype, T => {
            ort::value::Tensor::from_array((shape, decode::<T>(&t.data)))
                .map(SessionInputValue::from)
        })
    };
    value.map_err(|e| format!("input `{}`: {e}", t.name))
}

/// An ort output as a canonical tensor (a copy: ort owns its buffer).
pub(super) fn from_ort(name: &str, value: &DynValue) -> std::result::Result<Tensor, String> {
    let (ty, shape) = match value.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape),
        other => return Err(format!("output `{name}` is a {other}, not a tensor")),
    };
    let datatype = datatype_of(ty)
        .ok_or_else(|| format!("output `{name}` has unsupported element type {ty}"))?;
    let shape = shape
        .iter()
        .map(|&d| u64::try_from(d))
        .collect::<std::result::Result<Vec<u64>, _>>()
        .map_err(|_| format!("output `{name}` has a negative dimension: {shape:?}"))?;
    let data = if datatype == DataType::Uint8 {
        Bytes::copy_from_slice(extract::<u8>(name, value)?)
    } else {
        with_element!(datatype, T => Bytes::from(encode::<T>(extract::<T>(name, value)?)))
    };
    Ok(Tensor {
        name: name.to_owned(),
        datatype,
        shape,
        data,
    })
}

fn extract<'v, T: PrimitiveTensorElementType>(
    name: &str,
    value: &'v DynValue,
) -> std::result::Result<&'v [T], String> {
    value
        .try_extract_tensor::<T>()
        .map(|(_, data)| data)
        .map_err(|e| format!("output `{name}`: {e}"))
}

/// An element with a fixed little-endian encoding.
trait Element: Copy {
    const SIZE: usize;
    /// `bytes.len() == SIZE`.
    fn read(bytes: &[u8]) -> Self;
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! le_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(bytes: &[u8]) -> Self {
                let mut le = [0u8; std::mem::size_of::<$t>()];
                le.copy_from_slice(bytes);
                <$t>::from_le_bytes(le)
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

le_element!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

/// BOOL is one byte: any nonzero byte reads as true; true writes as 1.
impl Element for bool {
    const SIZE: usize = 1;
    fn read(bytes: &[u8]) -> Self {
        bytes.iter().any(|&b| b != 0)
    }
    fn write(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

/// Little-endian bytes to elements (a trailing partial element is ignored;
/// callers check the length first).
fn decode<T: Element>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read).collect()
}

/// Elements to little-endian bytes.
fn encode<T: Element>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * T::SIZE);
    for v in values {
        v.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Element + std::fmt::Debug>(values: &[T]) {
        let bytes = encode(values);
        assert_eq!(bytes.len(), values.len() * T::SIZE);
        assert_eq!(encode(&decode::<T>(&bytes)), bytes);
    }

    #[test]
    fn le_conversion_is_bit_exact_for_every_type() {
        round_trip(&[0u8, 1, 127, 255]);
        round_trip(&[i8::MIN, -1, 0, i8::MAX]);
        round_trip(&[0u16, 0x1234, u16::MAX]);
        round_trip(&[i16::MIN, -2, i16::MAX]);
        round_trip(&[0u32, 0xdead_beef, u32::MAX]);
        round_trip(&[i32::MIN, -3, i32::MAX]);
        round_trip(&[0u64, 0x0123_4567_89ab_cdef, u64::MAX]);
        round_trip(&[i64::MIN, -4, i64::MAX]);
        round_trip(&[true, false]);
        // Floats: signed zero, subnormals, infinities and NaN payloads.
        let f32s = [
            0.0f32,
            -0.0,
            f32::MIN_POSITIVE / 2.0,
            f32::INFINITY,
            f32::from_bits(0x7fc0_1234),
        ];
        round_trip(&f32s);
        let decoded = decode::<f32>(&encode(&f32s));
        assert!(f32s
            .iter()
            .zip(&decoded)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        let f64s = [
            -0.0f64,
            1e300,
            f64::NEG_INFINITY,
            f64::from_bits(0xfff8_0000_dead_beef),
        ];
        let decoded = decode::<f64>(&encode(&f64s));
        assert!(f64s
            .iter()
            .zip(&decoded)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // The byte order is little-endian regardless of the host.
        assert_eq!(encode(&[0x0102_0304u32]), [4, 3, 2, 1]);
        assert_eq!(decode::<i16>(&[0xfe, 0xff]), [-2]);
    }

    #[test]
    fn bool_reads_any_nonzero_byte_as_true_and_writes_zero_or_one() {
        assert_eq!(decode::<bool>(&[0, 1, 2, 255]), [false, true, true, true]);
        assert_eq!(encode(&[true, false, true]), [1, 0, 1]);
    }

    #[test]
    fn shapes_that_overflow_are_rejected() {
        assert_eq!(ort_shape(&[2, 3]), Some((vec![2, 3], 6)));
        assert_eq!(ort_shape(&[]), Some((vec![], 1)));
        assert_eq!(ort_shape(&[0, 5]), Some((vec![0, 5], 0)));
        assert_eq!(ort_shape(&[u64::MAX, 0]), None);
        assert_eq!(ort_shape(&[1 << 40, 1 << 40, 0]), None);
    }

    #[test]
    fn data_length_must_match_the_shape() {
        let t = |shape: Vec<u64>, len: usize| Tensor {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape,
            data: Bytes::from(vec![0u8; len]),
        };
        assert!(check_len(&t(vec![2, 2], 16)).is_ok());
        assert!(check_len(&t(vec![2, 2], 15)).is_err());
        assert!(check_len(&t(vec![1 << 62, 4], 0)).is_err());
        assert!(check_len(&t(vec![0, 4], 0)).is_ok());
    }
}
