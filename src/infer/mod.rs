//! Inference: ONNX models through ort.

pub mod backend;
pub mod tensor;
