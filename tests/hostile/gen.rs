//! Generators every decoder's suite draws from: deterministic bytes,
//! hostile characters and strings, arbitrary JSON.

use proptest::{collection::vec, prelude::*, sample::select};
use serde_json::Value;

/// Deterministic bytes from a seed (splitmix64), so cases stay small to
/// print and shrink.
pub fn bytes_from(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Characters that break things: controls, NUL, BOM, bidi overrides,
/// combining marks, joiners, noncharacters, the last code point, syntax.
pub fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::any(),
        2 => proptest::char::range('\0', '\u{1f}'),
        1 => proptest::char::range('\u{7f}', '\u{9f}'),
        3 => select(vec![
            '\0', '\u{feff}', '\u{200b}', '\u{202e}', '\u{fffd}', '\u{fffe}', '\u{ffff}',
            '\u{10ffff}', 'é', '\u{301}', '👩', '\u{200d}', '💻', '"', '\\', '\n', '\r', '\t',
            '[', ']', '{', '}', '#', '=', '.', ' ', '\'', '%', '/', '語', '\u{e000}',
        ]),
        4 => proptest::char::range('a', 'z'),
    ]
}

pub fn hostile_string(max: usize) -> impl Strategy<Value = String> {
    vec(hostile_char(), 0..=max).prop_map(|cs| cs.into_iter().collect())
}

/// Arbitrary JSON trees, with KServe/OpenAI words for keys and strings so
/// that they get past the first checks now and then.
pub fn arb_json() -> impl Strategy<Value = Value> {
    let word = || {
        select(vec![
            "inputs",
            "outputs",
            "name",
            "shape",
            "datatype",
            "data",
            "parameters",
            "binary_data_size",
            "binary_data_output",
            "binary_data",
            "id",
            "x",
            "y",
            "FP32",
            "BOOL",
            "model",
            "input",
            "encoding_format",
            "minilm",
        ])
        .prop_map(String::from)
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        select(vec![0i64, 1, 16, -1, 64, 1 << 40]).prop_map(Value::from),
        hostile_string(12).prop_map(Value::String),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec(
                (prop_oneof![3 => word(), 1 => hostile_string(8)], inner),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The serialized form of a placeholder string, to splice raw text in.
pub fn placeholder(i: usize) -> (Value, String) {
    let p = Value::String(format!("\u{1}RAW{i}\u{1}"));
    let text = serde_json::to_string(&p).unwrap();
    (p, text)
}
