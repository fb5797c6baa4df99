//! The ort backend against the committed fixture models and the outputs
//! Python onnxruntime 1.31.1 computed for them (`fixtures/models/`).
//!
//! Needs the runtime from `scripts/setup`; found through `resolve_library`,
//! so the tests pass from any current directory.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use infercache::testing::backend::*;
use infercache::testing::tensor::{DataType, Tensor};
use infercache::Error;
use serde_json::Value;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models")
}

fn open(name: &str, instances: usize) -> Backend {
    init_runtime(&resolve_library(None)).expect("ONNX Runtime (run scripts/setup)");
    let options = BackendOptions {
        intra_threads: 1,
        instances,
        nice: 0,
    };
    Backend::open(&models().join(format!("{name}.onnx")), &options).expect("open model")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(models().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A KServe-style JSON tensor as a canonical tensor.
fn tensor(json: &Value) -> Tensor {
    let datatype = DataType::from_name(json["datatype"].as_str().unwrap()).unwrap();
    let shape = json["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .collect();
    let mut data = Vec::new();
    for v in json["data"].as_array().unwrap() {
        match datatype {
            DataType::Bool => data.push(u8::from(v.as_bool().unwrap())),
            DataType::Uint8 => data.push(u8::try_from(v.as_u64().unwrap()).unwrap()),
            DataType::Int32 => {
                let x = i32::try_from(v.as_i64().unwrap()).unwrap();
                data.extend_from_slice(&x.to_le_bytes());
            }
            DataType::Int64 => data.extend_from_slice(&v.as_i64().unwrap().to_le_bytes()),
            DataType::Fp32 => data.extend_from_slice(&(v.as_f64().unwrap() as f32).to_le_bytes()),
            DataType::Fp64 => data.extend_from_slice(&v.as_f64().unwrap().to_le_bytes()),
            other => panic!("no fixture uses {other:?}"),
        }
    }
    Tensor {
        name: json["name"].as_str().unwrap().into(),
        datatype,
        shape,
        data: Bytes::from(data),
    }
}

fn sample(model: &str) -> (Vec<Tensor>, Vec<Tensor>) {
    let all = expected();
    let list = |key: &str| {
        all[model][key]
            .as_array()
            .unwrap()
            .iter()
            .map(tensor)
            .collect()
    };
    (list("inputs"), list("outputs"))
}

fn floats(t: &Tensor) -> Vec<f64> {
    match t.datatype {
        DataType::Fp32 => t
            .data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        DataType::Fp64 => t
            .data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        _ => unreachable!(),
    }
}

/// Integers and booleans exact; floats within 1e-5 relative (1e-6
/// absolute near zero).
fn assert_close(actual: &[Tensor], expected: &[Tensor]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(
            (&a.name, a.datatype, &a.shape),
            (&e.name, e.datatype, &e.shape)
        );
        if matches!(a.datatype, DataType::Fp32 | DataType::Fp64) {
            for (i, (x, y)) in floats(a).into_iter().zip(floats(e)).enumerate() {
                let ok = (x - y).abs() <= 1e-5 * x.abs().max(y.abs()) || (x - y).abs() <= 1e-6;
                assert!(ok, "{}[{i}]: got {x}, expected {y}", a.name);
            }
        } else {
            assert_eq!(a.data, e.data, "{}", a.name);
        }
    }
}

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> IoSpec {
    IoSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    }
}

#[test]
fn runtime_init_is_idempotent() {
    let library = resolve_library(None);
    assert!(library.is_absolute(), "{}", library.display());
    init_runtime(&library).unwrap();
    init_runtime(&library).unwrap();
}

#[test]
fn models_declare_their_inputs_and_outputs() {
    use DataType::*;
    let mlp = open("mlp", 1);
    assert_eq!(mlp.inputs(), [spec("x", Fp32, &[-1, 16])]);
    assert_eq!(mlp.outputs(), [spec("y", Fp32, &[-1, 4])]);
    assert!(!mlp.on_gpu());

    let fixed = open("fixed", 1);
    assert_eq!(fixed.inputs(), [spec("x", Fp32, &[2, 8])]);
    assert_eq!(fixed.outputs(), [spec("y", Fp32, &[2, 8])]);

    let two = open("two_io", 1);
    assert_eq!(
        two.inputs(),
        [spec("a", Fp32, &[-1, 4]), spec("b", Int64, &[-1, 4])]
    );
    assert_eq!(
        two.outputs(),
        [spec("sum", Fp32, &[-1, 4]), spec("count", Int64, &[-1, 1])]
    );

    let dtypes = open("dtypes", 1);
    assert_eq!(
        dtypes.inputs(),
        [
            spec("f64", Fp64, &[-1, 2]),
            spec("i32", Int32, &[-1, 2]),
            spec("u8", Uint8, &[-1, 2]),
            spec("flag", Bool, &[-1, 2]),
        ]
    );
    assert_eq!(
        dtypes.outputs(),
        [
            spec("f64_out", Fp64, &[-1, 2]),
            spec("i32_out", Int32, &[-1, 2]),
            spec("u8_out", Uint8, &[-1, 2]),
            spec("flag_out", Bool, &[-1, 2]),
        ]
    );
}

#[test]
fn every_model_computes_what_onnxruntime_computed() {
    for model in ["mlp", "two_io", "dtypes", "fixed", "heavy"] {
        let backend = open(model, 1);
        let (inputs, outputs) = sample(model);
        let got = backend
            .run(&inputs)
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_close(&got, &outputs);
    }
}

#[test]
fn input_order_does_not_matter() {
    let backend = open("dtypes", 1);
    let (mut inputs, outputs) = sample("dtypes");
    inputs.reverse();
    assert_close(&backend.run(&inputs).unwrap(), &outputs);
}

#[test]
fn runs_are_bit_identical_and_batches_equal_single_rows() {
    let backend = open("mlp", 1);
    let (inputs, _) = sample("mlp");
    let first = backend.run(&inputs).unwrap();
    assert_eq!(backend.run(&inputs).unwrap(), first);

    let x = &inputs[0];
    let mut rows = Vec::new();
    for r in 0..3 {
        let row = Tensor {
            shape: vec![1, 16],
            data: x.data.slice(r * 64..(r + 1) * 64),
            ..x.clone()
        };
        let y = backend.run(&[row]).unwrap().remove(0);
        assert_eq!(y.shape, [1, 4]);
        rows.extend_from_slice(&y.data);
    }
    assert_eq!(first[0].data, rows, "3-row batch != 3 single-row runs");
}

#[test]
fn an_empty_batch_gives_empty_outputs() {
    let backend = open("dtypes", 1);
    let inputs: Vec<Tensor> = backend
        .inputs()
        .iter()
        .map(|s| Tensor {
            name: s.name.clone(),
            datatype: s.datatype,
            shape: vec![0, 2],
            data: Bytes::new(),
        })
        .collect();
    let outputs = backend.run(&inputs).unwrap();
    assert_eq!(outputs.len(), 4);
    assert!(outputs
        .iter()
        .all(|t| t.shape == [0, 2] && t.data.is_empty()));
}

#[test]
fn instances_run_concurrently_with_equal_results() {
    let backend = open("mlp", 2);
    let (inputs, _) = sample("mlp");
    let reference = backend.run(&inputs).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .map(|_| backend.run(&inputs).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for out in h.join().unwrap() {
                assert_eq!(out, reference);
            }
        }
    });
}

#[test]
fn bad_inputs_are_compute_errors_not_panics() {
    let fixed = open("fixed", 1);
    let (inputs, _) = sample("fixed");
    let x = &inputs[0];
    let compute = |r: infercache::Result<Vec<Tensor>>| match r {
        Err(Error::Compute(m)) => m,
        other => panic!("expected a compute error, got {other:?}"),
    };

    // ORT rejects a shape the model does not take.
    let wrong_shape = Tensor {
        shape: vec![1, 16],
        ..x.clone()
    };
    let m = compute(fixed.run(&[wrong_shape]));
    assert!(m.contains("dimensions"), "{m}");
    // Our own checks.
    let short = Tensor {
        data: x.data.slice(1..),
        ..x.clone()
    };
    compute(fixed.run(&[short]));
    let wrong_type = Tensor {
        datatype: DataType::Int32,
        ..x.clone()
    };
    compute(fixed.run(&[wrong_type]));
    let unknown = Tensor {
        name: "nope".into(),
        ..x.clone()
    };
    compute(fixed.run(&[x.clone(), unknown]));
    compute(fixed.run(&[x.clone(), x.clone()]));
    compute(fixed.run(&[]));
    let huge = Tensor {
        shape: vec![u64::MAX, 2],
        ..x.clone()
    };
    compute(fixed.run(&[huge]));
    // Still works afterwards.
    fixed.run(&inputs).unwrap();
}

#[test]
fn missing_or_truncated_models_are_errors() {
    init_runtime(&resolve_library(None)).unwrap();
    let options = BackendOptions {
        intra_threads: 1,
        instances: 1,
        nice: 0,
    };
    let missing = Backend::open(&models().join("missing.onnx"), &options).unwrap_err();
    assert!(
        matches!(&missing, Error::Unavailable(m) if m.starts_with("cannot load model")),
        "{missing}"
    );

    let bytes = std::fs::read(models().join("mlp.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("truncated.onnx", &bytes[..bytes.len() / 2]),
        ("empty.onnx", &[][..]),
        ("garbage.onnx", &b"not an onnx model"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = Backend::open(&path, &options).unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains(name)),
            "{name}: {err}"
        );
    }
    let err = Backend::open(dir.path(), &options).unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
}
