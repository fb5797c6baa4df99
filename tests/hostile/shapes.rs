//! Zero and huge dimensions against every model, minilm included.

use bytesize::ByteSize;
use infercache::config::ModelConfig;
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestCaseError};
use serde_json::{json, Value};

use crate::{
    common::{
        model,
        raw_http::{http, Framing},
    },
    embeddings::minilm,
    fail,
    kserve_cases::{datatype_size, elements, MAX_REQUEST},
    kserve_error, Harness, QUICK, SHAPE_CASES,
};

/// One model input: (name, datatype, rank).
type InputSpec = (&'static str, &'static str, usize);

/// Each model's inputs.
const MODEL_INPUTS: &[(&str, &[InputSpec])] = &[
    ("mlp", &[("x", "FP32", 2)]),
    ("two_io", &[("a", "FP32", 2), ("b", "INT64", 2)]),
    (
        "dtypes",
        &[
            ("f64", "FP64", 2),
            ("i32", "INT32", 2),
            ("u8", "UINT8", 2),
            ("flag", "BOOL", 2),
        ],
    ),
    ("fixed", &[("x", "FP32", 2)]),
    ("lookup", &[("idx", "INT64", 1)]),
    ("ragged", &[("x", "FP32", 2)]),
    (
        "minilm",
        &[
            ("input_ids", "INT64", 2),
            ("attention_mask", "INT64", 2),
            ("token_type_ids", "INT64", 2),
        ],
    ),
];

/// Most elements a case sends; larger shapes go with empty data.
const SENT: u64 = 256;

fn zero_or_huge() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0i64..=4,
        2 => Just(0i64),
        2 => select(vec![1 << 20, 1 << 31, 1 << 40, 1 << 62, i64::MAX]),
    ]
}

#[derive(Debug, Clone)]
struct ShapeCase {
    model: usize,
    /// One shape shared by every input, or one per input.
    shapes: Vec<Vec<i64>>,
}

fn shape_case() -> impl Strategy<Value = ShapeCase> {
    (0..MODEL_INPUTS.len()).prop_flat_map(|model| {
        let inputs = MODEL_INPUTS[model].1;
        let rank = inputs[0].2;
        prop_oneof![
            3 => vec(zero_or_huge(), rank..=rank).prop_map(move |s| vec![s; inputs.len()]),
            1 => vec(vec(zero_or_huge(), rank..=rank), inputs.len()..=inputs.len()),
            1 => vec(vec(zero_or_huge(), 0..=4), inputs.len()..=inputs.len()),
        ]
        .prop_map(move |shapes| ShapeCase { model, shapes })
    })
}

/// Bytes a shape costs with every zero dimension counted as one.
fn footprint(shape: &[i64], size: u64) -> Option<u64> {
    shape.iter().try_fold(size, |n, d| {
        u64::try_from(*d).ok().and_then(|d| n.checked_mul(d.max(1)))
    })
}

async fn shape_one(addr: &str, case: &ShapeCase) -> Result<(), TestCaseError> {
    let (model, inputs) = MODEL_INPUTS[case.model];
    let rendered: Vec<Value> = inputs
        .iter()
        .zip(&case.shapes)
        .map(|((name, datatype, _), shape)| {
            let n = elements(shape).filter(|n| *n <= SENT).unwrap_or(0) as usize;
            let data = if *datatype == "BOOL" {
                json!(vec![false; n])
            } else {
                json!(vec![0; n])
            };
            json!({"name": name, "shape": shape, "datatype": datatype, "data": data})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "inputs": rendered })).unwrap();
    let path = format!("/v2/models/{model}/infer");
    let headers: [(&str, &[u8]); 1] = [("content-type", b"application/json")];
    let reply = http(addr, "POST", &path, &headers, &body, Framing::Length).await;
    let context = || {
        format!(
            "{model} {:?}: {} {}",
            case.shapes,
            reply.status,
            reply.text()
        )
    };
    let absurd = inputs
        .iter()
        .zip(&case.shapes)
        .any(|((_, datatype, _), shape)| {
            let size = datatype_size(datatype).unwrap();
            footprint(shape, size).is_none_or(|n| n > MAX_REQUEST)
        });
    if absurd {
        kserve_error(&reply, &[400]).map_err(|e| fail(format!("{e}\n{}", context())))?;
        prop_assert!(
            reply.elapsed < QUICK,
            "took {:?}: {}",
            reply.elapsed,
            context()
        );
    } else if reply.status != 200 {
        // The model may refuse what it cannot run (an empty row, a bad
        // index): a JSON error, never a crash or a hang.
        kserve_error(&reply, &[400, 429, 500]).map_err(|e| fail(format!("{e}\n{}", context())))?;
    }
    Ok(())
}

#[test]
fn every_model_survives_zero_and_huge_dimensions() {
    let mut minilm = minilm();
    minilm.max_delay_ms = 0;
    let h = Harness::start(|a| {
        a.models = MODEL_INPUTS
            .iter()
            .filter(|(name, _)| *name != "minilm")
            .map(|(name, _)| ModelConfig {
                max_delay_ms: 0,
                ..model(name, name)
            })
            .chain([minilm])
            .collect();
        a.max_request_size = Some(ByteSize::b(MAX_REQUEST));
    });
    // The report's abort, on the text model, as a fixed first case.
    h.rt.block_on(shape_one(
        h.addr.as_str(),
        &ShapeCase {
            model: MODEL_INPUTS.len() - 1,
            shapes: vec![vec![1 << 40, 0]; 3],
        },
    ))
    .unwrap();
    h.run(SHAPE_CASES, shape_case(), |case| {
        h.rt.block_on(shape_one(&h.addr, &case))
    });
    h.stop();
}
