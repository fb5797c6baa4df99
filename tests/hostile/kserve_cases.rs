//! KServe infer cases against `mlp` (x: FP32 [-1, 16] -> y: FP32 [-1, 4]):
//! what a case is, how it is generated, and the bytes it is sent as.

use proptest::{collection::vec, prelude::*, sample::select};
use serde_json::{json, Map, Value};

use crate::gen::{bytes_from, hostile_string, placeholder};

pub const MAX_REQUEST: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub enum Nest {
    Flat,
    /// Rows of this many elements: `[[..], [..]]`.
    Rows(usize),
    /// Every element in its own array: `[[a], [b]]`.
    Each,
    /// The flat array wrapped in this many more arrays.
    Deep(usize),
}

#[derive(Debug, Clone)]
pub enum Size {
    Exact,
    Off(i64),
    Lit(Value),
}

#[derive(Debug, Clone)]
pub enum Tail {
    Exact,
    Len(usize),
}

#[derive(Debug, Clone)]
pub enum Data {
    /// `data` as JSON numbers, one (possibly) poisoned element.
    Json {
        count: usize,
        seed: u64,
        poison: Option<(usize, Value)>,
        nest: Nest,
    },
    /// `data` as literal text, often not JSON at all.
    Text(String),
    /// Binary tensor data after the JSON; optionally `"data": null` too.
    Binary {
        size: Size,
        tail: Tail,
        seed: u64,
        null_data: bool,
    },
    /// Both `data` and `binary_data_size`.
    Both,
    Neither,
}

#[derive(Debug, Clone)]
pub struct InputCase {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Data,
}

#[derive(Debug, Clone)]
pub enum HeaderLen {
    /// Present (the JSON's length) exactly when binary data follows.
    Auto,
    Exact,
    Absent,
    Delta(i64),
    Number(u64),
    Junk(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct InferCase {
    pub inputs: Vec<InputCase>,
    pub id: Option<Value>,
    pub binary_output: Option<Value>,
    pub outputs: Option<Vec<(String, Option<Value>)>>,
    pub header: HeaderLen,
    pub junk_tail: Vec<u8>,
}

pub fn datatype_size(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        _ => return None,
    })
}

pub fn elements(shape: &[i64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |n, d| {
        u64::try_from(*d).ok().and_then(|d| n.checked_mul(d))
    })
}

pub fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..=20,
        2 => select(vec![
            15, 16, 17, 1 << 20, 1 << 31, 1 << 40, 1 << 58, 1 << 62, i64::MAX, -1, -16, i64::MIN,
        ]),
        1 => any::<i64>(),
    ]
}

pub fn shape() -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        12 => (1i64..=4).prop_map(|n| vec![n, 16]),
        3 => vec(dim(), 0..=4),
        2 => (dim(), dim()).prop_map(|(a, b)| vec![a, b]),
        1 => select(vec![
            vec![1 << 40, 1 << 40],
            vec![1 << 58],
            vec![1 << 18, 16],
            vec![0, 16],
            vec![0, 1 << 62],
            vec![1 << 62, 0],
            vec![16],
            vec![1, 16, 1],
        ]),
    ]
}

pub fn text_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            "NaN",
            "Infinity",
            "-",
            "[",
            "]",
            "[1,",
            "[1,]",
            "[,1]",
            "1e400",
            "[1e400]",
            "[-1e400]",
            "[01]",
            "[0x10]",
            "[.5]",
            "[1.]",
            "\"1.0\"",
            "{}",
            "[{}]",
            "[null]",
            "null",
            "true",
            "[true]",
            "[[[[",
            "]]]]",
            "[1 2]",
            "[\"\\ud800\"]",
            "[1]]",
            "[]",
            "[[]]",
            "1",
            "-0",
        ])
        .prop_map(String::from),
        vec(
            select(vec!["[", "]", ",", "1", "-", ".", "e", "0", "9", " ", "+"]),
            0..24
        )
        .prop_map(|ts| ts.concat()),
    ]
}

pub fn data_for(declared: Option<usize>) -> BoxedStrategy<Data> {
    let count = match declared {
        Some(n) => prop_oneof![
            12 => Just(n),
            1 => 0..=n + 3,
            1 => 0usize..80,
        ]
        .boxed(),
        None => (0usize..80).boxed(),
    };
    let poison = prop_oneof![
        9 => Just(None),
        1 => (
            0usize..64,
            select(vec![
                json!(true),
                json!(null),
                json!("1.0"),
                json!({}),
                json!([]),
                json!([1.0]),
                json!([[2]]),
                json!("NaN"),
                json!(false),
            ])
        )
            .prop_map(Some),
    ];
    let nest = prop_oneof![
        6 => Just(Nest::Flat),
        3 => (1usize..=32).prop_map(Nest::Rows),
        1 => Just(Nest::Each),
        2 => prop_oneof![4 => 1usize..=140, 1 => Just(100_000usize)].prop_map(Nest::Deep),
    ];
    let size = prop_oneof![
        10 => Just(Size::Exact),
        1 => select(vec![-64i64, -4, -1, 1, 4, 64]).prop_map(Size::Off),
        2 => select(vec![
            json!(0),
            json!(1u64 << 60),
            json!(u64::MAX),
            json!(-1),
            json!(1.5),
            json!("64"),
            json!(null),
            json!(true),
            json!([64]),
            json!({}),
        ])
        .prop_map(Size::Lit),
    ];
    let tail = prop_oneof![
        10 => Just(Tail::Exact),
        1 => (0usize..300).prop_map(Tail::Len),
    ];
    prop_oneof![
        14 => (count, any::<u64>(), poison, nest).prop_map(|(count, seed, poison, nest)| Data::Json {
            count,
            seed,
            poison,
            nest
        }),
        1 => text_junk().prop_map(Data::Text),
        6 => (size, tail, any::<u64>(), prop::bool::weighted(0.2)).prop_map(
            |(size, tail, seed, null_data)| Data::Binary {
                size,
                tail,
                seed,
                null_data
            }
        ),
        1 => Just(Data::Both),
        1 => Just(Data::Neither),
    ]
    .boxed()
}

pub fn input_case() -> impl Strategy<Value = InputCase> {
    let name = prop_oneof![
        30 => Just("x".to_string()),
        1 => select(vec!["y", "X", "", "x ", "x\0", "z", "xx"]).prop_map(String::from),
        1 => hostile_string(6),
    ];
    let datatype = prop_oneof![
        30 => Just("FP32".to_string()),
        2 => select(vec![
            "FP64", "INT64", "BOOL", "UINT8", "BYTES", "fp32", "", "FP32 ", "FP16", "BF16",
        ])
        .prop_map(String::from),
        1 => hostile_string(6),
    ];
    (name, datatype, shape()).prop_flat_map(|(name, datatype, shape)| {
        let declared = elements(&shape).filter(|n| *n <= 4096).map(|n| n as usize);
        data_for(declared).prop_map(move |data| InputCase {
            name: name.clone(),
            datatype: datatype.clone(),
            shape: shape.clone(),
            data,
        })
    })
}

pub fn infer_case() -> impl Strategy<Value = InferCase> {
    let inputs = prop_oneof![
        20 => vec(input_case(), 1..=1),
        1 => Just(vec![]),
        1 => vec(input_case(), 2..=3),
    ];
    let junk_value = || {
        select(vec![
            json!("true"),
            json!(1),
            json!(null),
            json!({}),
            json!([]),
            json!(0.5),
        ])
    };
    let id = prop_oneof![
        6 => Just(None),
        3 => hostile_string(10).prop_map(|s| Some(Value::String(s))),
        1 => Just(Some(Value::Null)),
        1 => select(vec![json!(7), json!([]), json!({"a": 1}), json!(true)]).prop_map(Some),
    ];
    let flag = move || {
        prop_oneof![
            6 => Just(None),
            4 => any::<bool>().prop_map(|b| Some(Value::Bool(b))),
            1 => junk_value().prop_map(Some),
        ]
    };
    let output = (
        prop_oneof![20 => Just("y".to_string()), 1 => hostile_string(4)],
        flag(),
    );
    let outputs = prop_oneof![
        6 => Just(None),
        3 => vec(output, 0..=3).prop_map(Some),
    ];
    let header = prop_oneof![
        24 => Just(HeaderLen::Auto),
        2 => Just(HeaderLen::Exact),
        2 => Just(HeaderLen::Absent),
        1 => select(vec![-3i64, -1, 1, 2, 5]).prop_map(HeaderLen::Delta),
        1 => prop_oneof![
            any::<u64>(),
            Just(1u64 << 60),
            Just(u64::MAX),
            Just(0u64),
        ]
        .prop_map(HeaderLen::Number),
        1 => prop_oneof![
            select(vec![
                "", "abc", "-1", "1.5", "0x10", "1e3", "18446744073709551616",
                "99999999999999999999999", "12abc", "-0", "1,2", "\u{663}\u{662}",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            // Visible ASCII and obs-text, with a non-digit in it.
            vec(prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff], 1..12)
                .prop_filter("not a number", |b| !b.iter().all(u8::is_ascii_digit)),
        ]
        .prop_map(HeaderLen::Junk),
    ];
    let junk_tail = prop_oneof![12 => Just(vec![]), 1 => vec(any::<u8>(), 1..8)];
    (inputs, id, flag(), outputs, header, junk_tail).prop_map(
        |(inputs, id, binary_output, outputs, header, junk_tail)| InferCase {
            inputs,
            id,
            binary_output,
            outputs,
            header,
            junk_tail,
        },
    )
}

/// A request as sent, plus what the oracle needs about it.
pub struct Rendered {
    pub json: String,
    pub body: Vec<u8>,
    pub header: Option<Vec<u8>>,
    /// Per input: the literal `data` text, if any.
    pub data_texts: Vec<Option<String>>,
    /// Per input: the `binary_data_size` value sent, if any.
    pub sizes: Vec<Option<Value>>,
}

pub fn element(seed: u64, i: usize) -> Value {
    let r = u64::from_le_bytes(
        bytes_from(seed ^ (i as u64).wrapping_mul(31), 8)[..8]
            .try_into()
            .unwrap(),
    );
    match r % 40 {
        0 => json!(r as i64),
        1 => json!(u64::MAX),
        2 => json!(1e300),
        3 => json!(-3.5e38),
        4 => json!(5e-324),
        5 => json!(-0.0),
        6..=12 => json!((r % 2001) as i64 - 1000),
        _ => json!(((r % 2_000_001) as f64 - 1_000_000.0) / 997.0),
    }
}

pub fn render_data(
    count: usize,
    seed: u64,
    poison: &Option<(usize, Value)>,
    nest: &Nest,
) -> String {
    let mut elems: Vec<Value> = (0..count).map(|i| element(seed, i)).collect();
    if let Some((at, v)) = poison {
        let at = at % (elems.len() + 1);
        elems.insert(at, v.clone());
    }
    let value = match nest {
        Nest::Flat | Nest::Deep(_) => Value::Array(elems),
        Nest::Rows(k) => Value::Array(elems.chunks(*k).map(|c| Value::Array(c.to_vec())).collect()),
        Nest::Each => Value::Array(elems.into_iter().map(|e| json!([e])).collect()),
    };
    let text = serde_json::to_string(&value).unwrap();
    match nest {
        Nest::Deep(d) => format!("{}{text}{}", "[".repeat(*d), "]".repeat(*d)),
        _ => text,
    }
}

pub fn render_infer(case: &InferCase) -> Rendered {
    let mut splices = Vec::new();
    let mut tail = Vec::new();
    let mut data_texts = Vec::new();
    let mut sizes = Vec::new();
    let inputs: Vec<Value> = case
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let mut obj = Map::new();
            obj.insert("name".into(), json!(input.name));
            obj.insert("datatype".into(), json!(input.datatype));
            obj.insert("shape".into(), json!(input.shape));
            let byte_len = elements(&input.shape)
                .and_then(|n| n.checked_mul(datatype_size(&input.datatype)?))
                .unwrap_or(64);
            let mut text = None;
            let mut size = None;
            match &input.data {
                Data::Json {
                    count,
                    seed,
                    poison,
                    nest,
                } => text = Some(render_data(*count, *seed, poison, nest)),
                Data::Text(t) => text = Some(t.clone()),
                Data::Binary {
                    size: s,
                    tail: t,
                    seed,
                    null_data,
                } => {
                    let v = match s {
                        Size::Exact => json!(byte_len),
                        Size::Off(d) => json!(byte_len as i128 + *d as i128),
                        Size::Lit(v) => v.clone(),
                    };
                    let n = match t {
                        Tail::Exact => byte_len.min(1 << 16) as usize,
                        Tail::Len(n) => *n,
                    };
                    tail.extend(bytes_from(*seed, n));
                    size = Some(v);
                    if *null_data {
                        text = Some("null".into());
                    }
                }
                Data::Both => {
                    let n = elements(&input.shape).unwrap_or(1).min(64) as usize;
                    text = Some(render_data(n, 1, &None, &Nest::Flat));
                    size = Some(json!(byte_len));
                    tail.extend(bytes_from(2, byte_len.min(256) as usize));
                }
                Data::Neither => {}
            }
            if let Some(v) = &size {
                obj.insert("parameters".into(), json!({ "binary_data_size": v }));
            }
            if let Some(t) = &text {
                let (p, serialized) = placeholder(i);
                obj.insert("data".into(), p);
                splices.push((serialized, t.clone()));
            }
            data_texts.push(text);
            sizes.push(size);
            Value::Object(obj)
        })
        .collect();
    let mut top = Map::new();
    top.insert("inputs".into(), Value::Array(inputs));
    if let Some(id) = &case.id {
        top.insert("id".into(), id.clone());
    }
    if let Some(b) = &case.binary_output {
        top.insert("parameters".into(), json!({ "binary_data_output": b }));
    }
    if let Some(outs) = &case.outputs {
        let outs: Vec<Value> = outs
            .iter()
            .map(|(name, p)| match p {
                None => json!({ "name": name }),
                Some(p) => json!({ "name": name, "parameters": { "binary_data": p } }),
            })
            .collect();
        top.insert("outputs".into(), Value::Array(outs));
    }
    let mut json = serde_json::to_string(&Value::Object(top)).unwrap();
    for (from, to) in splices {
        json = json.replacen(&from, &to, 1);
    }
    tail.extend_from_slice(&case.junk_tail);
    let mut body = json.clone().into_bytes();
    body.extend_from_slice(&tail);
    let header = match &case.header {
        HeaderLen::Auto => (!tail.is_empty()).then(|| json.len().to_string().into_bytes()),
        HeaderLen::Exact => Some(json.len().to_string().into_bytes()),
        HeaderLen::Absent => None,
        HeaderLen::Delta(d) => Some((json.len() as i64 + d).max(0).to_string().into_bytes()),
        HeaderLen::Number(n) => Some(n.to_string().into_bytes()),
        HeaderLen::Junk(b) => Some(b.clone()),
    };
    Rendered {
        json,
        body,
        header,
        data_texts,
        sizes,
    }
}
