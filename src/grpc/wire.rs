//! `ModelInferRequest` / `ModelInferResponse` to and from canonical
//! [`Tensor`]s, so a tensor has one cache key whatever the protocol.
//!
//! An input's bytes come either from `raw_input_contents` (little-endian,
//! what `tritonclient.grpc` sends) or from its typed `contents`; both become
//! the same little-endian bytes. A declared size is checked against
//! `max_request_size` before anything is allocated, and typed contents are
//! counted against the shape before they are converted. Outputs always go
//! back as `raw_output_contents`, sharing the cached buffers.

use std::collections::HashMap;

use bytes::Bytes;

use super::proto::{
    infer_parameter::ParameterChoice, model_infer_request::InferInputTensor,
    model_infer_response::InferOutputTensor, InferParameter, InferTensorContents,
    ModelInferRequest, ModelInferResponse,
};
use crate::{
    error::{Error, Result},
    infer::{
        tensor::{DataType, Tensor},
        Response,
    },
};

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

/// A decoded `ModelInferRequest`.
#[derive(Debug)]
pub struct Decoded {
    pub id: String,
    pub inputs: Vec<Tensor>,
    /// Requested output names; `None`: all.
    pub outputs: Option<Vec<String>>,
}

/// Decode a request's tensors; no input may declare more than `max_bytes`.
pub fn decode(request: ModelInferRequest, max_bytes: u64) -> Result<Decoded> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() {
        if raw.len() != request.inputs.len() {
            return Err(bad(format!(
                "raw_input_contents has {} entries for {} inputs; send one per input, in order",
                raw.len(),
                request.inputs.len()
            )));
        }
        if let Some(t) = request.inputs.iter().find(|t| t.contents.is_some()) {
            return Err(bad(format!(
                "input `{}` has contents although raw_input_contents is used; send every input one way",
                t.name
            )));
        }
    }
    let mut raw = raw.into_iter();
    let inputs = request
        .inputs
        .into_iter()
        .map(|input| decode_input(input, raw.next(), max_bytes))
        .collect::<Result<_>>()?;
    let outputs = (!request.outputs.is_empty())
        .then(|| request.outputs.into_iter().map(|o| o.name).collect());
    Ok(Decoded {
        id: request.id,
        inputs,
        outputs,
    })
}

fn decode_input(input: InferInputTensor, raw: Option<Bytes>, max_bytes: u64) -> Result<Tensor> {
    let name = input.name;
    let datatype =
        DataType::from_name(&input.datatype).map_err(|e| bad(format!("input `{name}`: {e}")))?;
    let (shape, elements) = Tensor::declared(&name, datatype, &input.shape, max_bytes)?;
    let data = match raw {
        Some(bytes) => {
            let want = elements * datatype.size() as u64;
            if bytes.len() as u64 != want {
                return Err(bad(format!(
                    "input `{name}`: shape {shape:?} of {} needs {want} bytes, raw_input_contents has {}",
                    datatype.name(),
                    bytes.len()
                )));
            }
            bytes
        }
        None => typed(
            &name,
            datatype,
            elements,
            input.contents.unwrap_or_default(),
        )?,
    };
    Ok(Tensor {
        name,
        datatype,
        shape,
        data,
    })
}

/// Little-endian bytes of typed contents, from the one field `datatype`
/// uses; values must fit the datatype and their count the shape.
fn typed(name: &str, datatype: DataType, elements: u64, c: InferTensorContents) -> Result<Bytes> {
    let (field, used) = match datatype {
        DataType::Bool => ("bool_contents", c.bool_contents.len()),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => {
            ("int_contents", c.int_contents.len())
        }
        DataType::Int64 => ("int64_contents", c.int64_contents.len()),
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => {
            ("uint_contents", c.uint_contents.len())
        }
        DataType::Uint64 => ("uint64_contents", c.uint64_contents.len()),
        DataType::Fp32 => ("fp32_contents", c.fp32_contents.len()),
        DataType::Fp64 => ("fp64_contents", c.fp64_contents.len()),
    };
    let total = c.bool_contents.len()
        + c.int_contents.len()
        + c.int64_contents.len()
        + c.uint_contents.len()
        + c.uint64_contents.len()
        + c.fp32_contents.len()
        + c.fp64_contents.len()
        + c.bytes_contents.len();
    if total != used {
        return Err(bad(format!(
            "input `{name}`: {} contents go in {field} only",
            datatype.name()
        )));
    }
    if used as u64 != elements {
        return Err(bad(format!(
            "input `{name}`: the shape has {elements} elements but {field} has {used} \
             (send the data in raw_input_contents or contents)"
        )));
    }
    let range = |v: &dyn std::fmt::Display| {
        bad(format!(
            "input `{name}`: {v} is out of range for {}",
            datatype.name()
        ))
    };
    macro_rules! narrow {
        ($values:expr, $t:ty) => {{
            let mut out = Vec::with_capacity(used * std::mem::size_of::<$t>());
            for v in $values {
                out.extend_from_slice(&<$t>::try_from(*v).map_err(|_| range(v))?.to_le_bytes());
            }
            out
        }};
    }
    macro_rules! le {
        ($values:expr) => {
            $values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
        };
    }
    let bytes = match datatype {
        DataType::Bool => c.bool_contents.iter().map(|b| u8::from(*b)).collect(),
        DataType::Int8 => narrow!(&c.int_contents, i8),
        DataType::Int16 => narrow!(&c.int_contents, i16),
        DataType::Int32 => le!(c.int_contents),
        DataType::Int64 => le!(c.int64_contents),
        DataType::Uint8 => narrow!(&c.uint_contents, u8),
        DataType::Uint16 => narrow!(&c.uint_contents, u16),
        DataType::Uint32 => le!(c.uint_contents),
        DataType::Uint64 => le!(c.uint64_contents),
        DataType::Fp32 => le!(c.fp32_contents),
        DataType::Fp64 => le!(c.fp64_contents),
    };
    Ok(Bytes::from(bytes))
}

/// Encode a response; the cache status also travels as parameter `x-cache`.
pub fn encode(model: &str, id: String, response: Response) -> ModelInferResponse {
    let status = InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam(
            response.status.as_str().to_string(),
        )),
    };
    let (outputs, raw) = response
        .outputs
        .into_iter()
        .map(|t| {
            let meta = InferOutputTensor {
                name: t.name,
                datatype: t.datatype.name().to_string(),
                shape: t.shape.iter().map(|d| *d as i64).collect(),
                parameters: HashMap::new(),
                contents: None,
            };
            (meta, t.data)
        })
        .unzip();
    ModelInferResponse {
        model_name: model.to_string(),
        model_version: "1".into(),
        id,
        parameters: HashMap::from([("x-cache".to_string(), status)]),
        outputs,
        raw_output_contents: raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        datatype: &str,
        shape: &[i64],
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: HashMap::new(),
            contents,
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> ModelInferRequest {
        ModelInferRequest {
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_contents_decode_to_the_same_tensor() {
        let values = [1.5f32, 2.0, 3.0, -4.0];
        let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let raw = decode(
            request(
                vec![input("FP32", &[2, 2], None)],
                vec![Bytes::from(le.clone())],
            ),
            1 << 20,
        )
        .unwrap();
        let contents = InferTensorContents {
            fp32_contents: values.to_vec(),
            ..Default::default()
        };
        let typed = decode(
            request(vec![input("FP32", &[2, 2], Some(contents))], vec![]),
            1 << 20,
        )
        .unwrap();
        assert_eq!(raw.inputs, typed.inputs);
        assert_eq!(&raw.inputs[0].data[..], &le[..]);
        let ints = InferTensorContents {
            int_contents: vec![-1, 127],
            ..Default::default()
        };
        let int8 = decode(
            request(vec![input("INT8", &[2], Some(ints))], vec![]),
            1 << 20,
        )
        .unwrap();
        assert_eq!(&int8.inputs[0].data[..], &[0xff, 0x7f]);
    }

    #[test]
    fn bad_requests_are_refused_with_reasons() {
        let fp32 = |v: Vec<f32>| {
            Some(InferTensorContents {
                fp32_contents: v,
                ..Default::default()
            })
        };
        let cases: Vec<(ModelInferRequest, &str)> = vec![
            (
                request(vec![input("BYTES", &[1], None)], vec![]),
                "unsupported datatype",
            ),
            (
                request(vec![input("FP32", &[-1], None)], vec![]),
                "negative",
            ),
            (
                request(vec![input("FP32", &[1 << 20, 1 << 20], None)], vec![]),
                "max_request_size",
            ),
            (
                request(vec![input("FP32", &[i64::MAX, i64::MAX], None)], vec![]),
                "max_request_size",
            ),
            (
                request(
                    vec![input("FP32", &[2], None)],
                    vec![Bytes::from_static(&[0; 4])],
                ),
                "needs 8 bytes",
            ),
            (
                request(
                    vec![input("FP32", &[2], None)],
                    vec![Bytes::new(), Bytes::new()],
                ),
                "2 entries for 1 inputs",
            ),
            (
                request(
                    vec![input("FP32", &[1], fp32(vec![1.0]))],
                    vec![Bytes::from_static(&[0; 4])],
                ),
                "one way",
            ),
            (
                request(vec![input("FP32", &[3], fp32(vec![1.0]))], vec![]),
                "has 3 elements",
            ),
            (
                request(vec![input("FP32", &[1], None)], vec![]),
                "has 1 elements",
            ),
            (
                request(vec![input("INT64", &[1], fp32(vec![1.0]))], vec![]),
                "go in int64_contents only",
            ),
            (
                request(
                    vec![input(
                        "UINT8",
                        &[1],
                        Some(InferTensorContents {
                            uint_contents: vec![256],
                            ..Default::default()
                        }),
                    )],
                    vec![],
                ),
                "out of range",
            ),
        ];
        for (request, expect) in cases {
            let err = decode(request, 1 << 20).unwrap_err();
            assert!(
                matches!(&err, Error::BadRequest(m) if m.contains(expect)),
                "{expect}: {err}"
            );
        }
    }
}
