//! KServe v2 / Open Inference Protocol REST bodies, with Triton's binary
//! tensor extension, decoded to and encoded from canonical [`Tensor`]s.
//!
//! A request body is a JSON header, optionally followed by raw tensor bytes
//! when `Inference-Header-Content-Length` says where the JSON ends; an input
//! with `parameters.binary_data_size` takes its bytes from there, in order.
//! JSON `data` (flat or nested) is streamed straight into little-endian
//! bytes: memory grows with the data actually sent, never with a declared
//! shape, and more elements than the shape declares stop the parse.

use std::fmt;

use bytes::Bytes;
use serde::{
    de::{self, DeserializeSeed, SeqAccess, Visitor},
    ser::SerializeSeq,
    Deserialize, Serialize, Serializer,
};
use serde_json::{value::RawValue, Map, Value};

use crate::{
    error::{Error, Result},
    infer::tensor::{DataType, Tensor},
};

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct RequestJson<'a> {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A decoded infer request.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Requested output names; `None`: all.
    pub outputs: Option<Vec<String>>,
    /// Which requested outputs go back as binary, by name.
    pub binary: BinaryOutputs,
}

/// Which outputs the client wants as binary data.
#[derive(Debug, Default)]
pub struct BinaryOutputs {
    /// Request-level `binary_data_output`.
    pub all: bool,
    /// Output-level `binary_data` settings, overriding `all`.
    pub by_name: Vec<(String, bool)>,
}

impl BinaryOutputs {
    pub fn is_binary(&self, name: &str) -> bool {
        self.by_name
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.all, |(_, b)| *b)
    }
}

fn flag(parameters: &Map<String, Value>, name: &str) -> Result<Option<bool>> {
    match parameters.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!(
            "parameter `{name}` must be true or false, got {other}"
        ))),
    }
}

/// Decode a body; `header_len` is `Inference-Header-Content-Length`.
pub fn decode(body: &Bytes, header_len: Option<usize>, max_bytes: u64) -> Result<InferRequest> {
    let json_len = header_len.unwrap_or(body.len());
    if json_len > body.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {json_len} but the body has {} bytes",
            body.len()
        )));
    }
    let request: RequestJson<'_> = serde_json::from_slice(&body[..json_len])
        .map_err(|e| bad(format!("malformed inference request JSON: {e}")))?;
    let mut binary = body.slice(json_len..);
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        inputs.push(decode_input(input, &mut binary, max_bytes)?);
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data follow the inputs unused; check binary_data_size",
            binary.len()
        )));
    }
    let mut binary_outputs = BinaryOutputs {
        all: flag(&request.parameters, "binary_data_output")?.unwrap_or(false),
        by_name: Vec::new(),
    };
    let outputs = match request.outputs {
        None => None,
        Some(list) => {
            let mut names = Vec::with_capacity(list.len());
            for o in list {
                if let Some(b) = flag(&o.parameters, "binary_data")? {
                    binary_outputs.by_name.push((o.name.clone(), b));
                }
                names.push(o.name);
            }
            Some(names)
        }
    };
    Ok(InferRequest {
        id: request.id,
        inputs,
        outputs,
        binary: binary_outputs,
    })
}

fn decode_input(input: &InputJson<'_>, binary: &mut Bytes, max_bytes: u64) -> Result<Tensor> {
    let name = &input.name;
    let datatype =
        DataType::from_name(&input.datatype).map_err(|e| bad(format!("input `{name}`: {e}")))?;
    let (shape, elements) = Tensor::declared(name, datatype, &input.shape, max_bytes)?;
    let byte_len = elements * datatype.size() as u64;
    let elements = elements as usize;
    let data = match (input.parameters.get("binary_data_size"), input.data) {
        (Some(size), None) => {
            let size = size.as_u64().ok_or_else(|| {
                bad(format!(
                    "input `{name}`: binary_data_size must be a whole number"
                ))
            })?;
            if size != byte_len {
                return Err(bad(format!(
                    "input `{name}`: binary_data_size {size} does not match shape {shape:?} of {} ({byte_len} bytes)",
                    datatype.name()
                )));
            }
            if (binary.len() as u64) < size {
                return Err(bad(format!(
                    "input `{name}`: binary_data_size {size} but only {} bytes of binary data remain",
                    binary.len()
                )));
            }
            binary.split_to(size as usize)
        }
        (None, Some(raw)) => {
            let mut out =
                Vec::with_capacity((byte_len as usize).min(raw.get().len() * datatype.size()));
            let mut count = 0usize;
            let mut de = serde_json::Deserializer::from_str(raw.get());
            Flatten {
                datatype,
                out: &mut out,
                limit: elements,
                count: &mut count,
            }
            .deserialize(&mut de)
            .map_err(|e| bad(format!("input `{name}`: {e}")))?;
            if count != elements {
                return Err(bad(format!(
                    "input `{name}`: shape {shape:?} has {elements} elements but data has {count}"
                )));
            }
            Bytes::from(out)
        }
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "input `{name}` has both data and binary_data_size"
            )))
        }
        (None, None) => {
            return Err(bad(format!(
                "input `{name}` has neither data nor binary_data_size"
            )))
        }
    };
    Ok(Tensor {
        name: name.clone(),
        datatype,
        shape,
        data,
    })
}

/// Streams nested JSON arrays of numbers or booleans into LE bytes.
struct Flatten<'a> {
    datatype: DataType,
    out: &'a mut Vec<u8>,
    limit: usize,
    count: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Flatten<'_> {
    fn push<E: de::Error>(self, bytes: &[u8]) -> Result<(), E> {
        *self.count += 1;
        if *self.count > self.limit {
            return Err(E::custom(format!(
                "more elements than the shape declares ({})",
                self.limit
            )));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn int<E: de::Error>(self, v: i128) -> Result<(), E> {
        let datatype = self.datatype;
        let range = || E::custom(format!("{v} is out of range for {}", datatype.name()));
        macro_rules! le {
            ($t:ty) => {
                <$t>::try_from(v).map_err(|_| range())?.to_le_bytes()
            };
        }
        match datatype {
            DataType::Uint8 => self.push(&le!(u8)),
            DataType::Uint16 => self.push(&le!(u16)),
            DataType::Uint32 => self.push(&le!(u32)),
            DataType::Uint64 => self.push(&le!(u64)),
            DataType::Int8 => self.push(&le!(i8)),
            DataType::Int16 => self.push(&le!(i16)),
            DataType::Int32 => self.push(&le!(i32)),
            DataType::Int64 => self.push(&le!(i64)),
            DataType::Fp32 => self.push(&(v as f32).to_le_bytes()),
            DataType::Fp64 => self.push(&(v as f64).to_le_bytes()),
            DataType::Bool => Err(E::custom("BOOL data must be true or false")),
        }
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a (nested) array of {} values", self.datatype.name())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Flatten {
            datatype,
            out,
            limit,
            count,
        } = self;
        while seq
            .next_element_seed(Flatten {
                datatype,
                out: &mut *out,
                limit,
                count: &mut *count,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.datatype {
            DataType::Bool => self.push(&[u8::from(v)]),
            other => Err(E::custom(format!(
                "expected {} numbers, got {v}",
                other.name()
            ))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.int(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.int(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.datatype {
            DataType::Fp32 => self.push(&(v as f32).to_le_bytes()),
            DataType::Fp64 => self.push(&v.to_le_bytes()),
            other => Err(E::custom(format!(
                "{v} is not a whole number, as {} needs",
                other.name()
            ))),
        }
    }
}

/// Serializes a tensor's LE bytes as a flat JSON array.
struct DataJson<'a>(&'a Tensor);

impl Serialize for DataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let size = t.datatype.size();
        let mut seq = s.serialize_seq(Some(t.data.len() / size))?;
        for c in t.data.chunks_exact(size) {
            macro_rules! el {
                ($t:ty) => {
                    seq.serialize_element(&<$t>::from_le_bytes(
                        c.try_into().expect("element size"),
                    ))?
                };
            }
            match t.datatype {
                DataType::Bool => seq.serialize_element(&(c[0] != 0))?,
                DataType::Uint8 => el!(u8),
                DataType::Uint16 => el!(u16),
                DataType::Uint32 => el!(u32),
                DataType::Uint64 => el!(u64),
                DataType::Int8 => el!(i8),
                DataType::Int16 => el!(i16),
                DataType::Int32 => el!(i32),
                DataType::Int64 => el!(i64),
                DataType::Fp32 => el!(f32),
                DataType::Fp64 => el!(f64),
            }
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct OutputOut<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [u64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataJson<'a>>,
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    model_name: &'a str,
    model_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputOut<'a>>,
}

/// An encoded response: the JSON header's length when binary data follows.
pub struct Encoded {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
}

/// Encode outputs; those `binary` selects go after the JSON as raw bytes.
pub fn encode(
    model: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: &BinaryOutputs,
) -> Encoded {
    let as_binary: Vec<bool> = outputs.iter().map(|t| binary.is_binary(&t.name)).collect();
    let response = ResponseOut {
        model_name: model,
        model_version: "1",
        id,
        outputs: outputs
            .iter()
            .zip(&as_binary)
            .map(|(t, &bin)| OutputOut {
                name: &t.name,
                datatype: t.datatype.name(),
                shape: &t.shape,
                parameters: bin.then(|| serde_json::json!({ "binary_data_size": t.data.len() })),
                data: (!bin).then_some(DataJson(t)),
            })
            .collect(),
    };
    let mut body = serde_json::to_vec(&response).expect("serializing a response cannot fail");
    if !as_binary.contains(&true) {
        return Encoded {
            body,
            header_len: None,
        };
    }
    let header_len = body.len();
    for (t, bin) in outputs.iter().zip(&as_binary) {
        if *bin {
            body.extend_from_slice(&t.data);
        }
    }
    Encoded {
        body,
        header_len: Some(header_len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    #[test]
    fn json_and_binary_encodings_decode_to_the_same_tensor() {
        let json =
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1.5,2],[3,-4]]}]}"#;
        let a = decode(&Bytes::from_static(json), None, 1 << 20).unwrap();
        let header = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
        let mut body = header.to_vec();
        body.extend(f32s(&[1.5, 2.0, 3.0, -4.0]));
        let b = decode(&Bytes::from(body), Some(header.len()), 1 << 20).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(&a.inputs[0].data[..], &f32s(&[1.5, 2.0, 3.0, -4.0])[..]);
    }

    #[test]
    fn bad_bodies_are_refused_with_reasons() {
        let cases: &[(&[u8], Option<usize>, &str)] = &[
            (b"{not json", None, "malformed"),
            (br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#, None, "has 3 elements but data has 2"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]}"#, None, "more elements"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}"#, None, "out of range"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}"#, None, "whole number"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[1]}]}"#, None, "true or false"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]}"#, None, "unsupported datatype"),
            (br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[]}]}"#, None, "negative"),
            (br#"{"inputs":[{"name":"x","shape":[1000000,1000000,1000000],"datatype":"FP32","data":[]}]}"#, None, "max_request_size"),
            (br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#, None, "does not match"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#, None, "neither"),
            (b"{}", Some(99), "Inference-Header-Content-Length"),
        ];
        for (body, header, expect) in cases {
            let err = decode(&Bytes::copy_from_slice(body), *header, 1 << 20).unwrap_err();
            assert!(
                matches!(&err, Error::BadRequest(m) if m.contains(expect)),
                "{expect}: {err}"
            );
        }
        // Binary data that is short, or left over.
        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut short = header.to_vec();
        short.extend([0u8; 4]);
        assert!(decode(&Bytes::from(short), Some(header.len()), 1 << 20).is_err());
        let mut long = header.to_vec();
        long.extend([0u8; 12]);
        let err = decode(&Bytes::from(long), Some(header.len()), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("unused"), "{err}");
    }

    #[test]
    fn outputs_encode_as_json_or_binary() {
        let t = Tensor {
            name: "y".into(),
            datatype: DataType::Fp32,
            shape: vec![2],
            data: Bytes::from(f32s(&[0.5, -1.0])),
        };
        let json = encode(
            "m",
            Some("r1"),
            std::slice::from_ref(&t),
            &BinaryOutputs::default(),
        );
        assert_eq!(json.header_len, None);
        let v: Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5, -1.0]));
        assert_eq!(v["id"], "r1");
        let bin = encode(
            "m",
            None,
            &[t],
            &BinaryOutputs {
                all: true,
                by_name: vec![],
            },
        );
        let n = bin.header_len.unwrap();
        let v: Value = serde_json::from_slice(&bin.body[..n]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&bin.body[n..], &f32s(&[0.5, -1.0])[..]);
    }
}
