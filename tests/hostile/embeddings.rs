//! `/v1/embeddings` against the real all-MiniLM-L6-v2.

use base64::Engine;
use bytesize::ByteSize;
use infercache::config::ModelConfig;
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestCaseError};
use serde_json::{json, Map, Value};

use crate::{
    common::raw_http::{find, http, Framing, Reply},
    fail,
    gen::{arb_json, hostile_string, placeholder},
    healthy, openai_error, refuses_declared_size, Harness, Sides, EMBED_CASES,
};

/// The real text model, with two threads.
pub fn minilm() -> ModelConfig {
    ModelConfig {
        threads: 2,
        ..crate::common::minilm()
    }
}

const DIM: usize = 384;
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Clone)]
enum Text {
    Chars(String),
    /// `piece` repeated to about `bytes` bytes.
    Huge {
        piece: String,
        bytes: usize,
    },
}

impl Text {
    fn render(&self) -> String {
        match self {
            Text::Chars(s) => s.clone(),
            Text::Huge { piece, bytes } => {
                let piece = if piece.is_empty() { "a" } else { piece };
                piece.repeat(bytes / piece.len() + 1)
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Item {
    Text(Text),
    Other(Value),
}

#[derive(Debug, Clone)]
enum Input {
    One(Text),
    List(Vec<Item>),
    /// This many short distinct texts.
    TooMany(usize),
    /// Not a string nor an array of strings.
    Other(Value),
    Absent,
    /// A JSON string literal of `\uXXXX` escapes, lone surrogates included.
    Escaped(Vec<u16>),
    /// A string with invalid UTF-8 bytes in the body.
    BadUtf8,
}

#[derive(Debug, Clone)]
struct EmbedCase {
    model: Option<Value>,
    input: Input,
    encoding: Option<Value>,
    dimensions: Option<Value>,
    user: Option<Value>,
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        30 => hostile_string(40).prop_map(Text::Chars),
        1 => (hostile_string(12), 90_000usize..110_000)
            .prop_map(|(piece, bytes)| Text::Huge { piece, bytes }),
    ]
}

fn non_text_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            json!(null),
            json!(7),
            json!(-1.5),
            json!(true),
            json!({}),
            json!({"text": "a"}),
            json!([]),
            json!([1, 2, 3]),
            json!([[101, 2023, 102]]),
            json!([["a"]]),
            json!([null]),
        ]),
        arb_json().prop_filter("not text", |v| match v {
            Value::String(_) => false,
            Value::Array(items) => !items.iter().all(Value::is_string),
            _ => true,
        }),
    ]
}

fn embed_case() -> impl Strategy<Value = EmbedCase> {
    let model = prop_oneof![
        20 => Just(Some(json!("minilm"))),
        1 => hostile_string(8).prop_map(|s| Some(Value::String(s))),
        1 => select(vec![json!(null), json!(1), json!(["minilm"]), json!("MINILM")]).prop_map(Some),
        1 => Just(None),
    ];
    let item =
        prop_oneof![20 => text().prop_map(Item::Text), 1 => non_text_value().prop_map(Item::Other)];
    let input = prop_oneof![
        8 => text().prop_map(Input::One),
        12 => vec(item, 0..6).prop_map(Input::List),
        1 => (MAX_INPUTS + 1..MAX_INPUTS + 40).prop_map(Input::TooMany),
        2 => non_text_value().prop_map(Input::Other),
        1 => Just(Input::Absent),
        1 => vec(
            prop_oneof![any::<u16>(), 0xd800u16..0xe000, 0u16..0x80],
            0..8
        )
        .prop_map(Input::Escaped),
        1 => Just(Input::BadUtf8),
    ];
    let encoding = prop_oneof![
        6 => Just(None),
        3 => Just(Some(json!("float"))),
        3 => Just(Some(json!("base64"))),
        1 => Just(Some(Value::Null)),
        1 => prop_oneof![
            select(vec!["hex", "FLOAT", "Base64", "", "float ", "base64\0"]).prop_map(String::from),
            hostile_string(8),
        ]
        .prop_map(|s| Some(Value::String(s))),
        1 => select(vec![json!(1), json!(true), json!(["float"]), json!({})]).prop_map(Some),
    ];
    let dimensions = prop_oneof![
        12 => Just(None),
        2 => Just(Some(json!(DIM))),
        1 => Just(Some(Value::Null)),
        1 => prop_oneof![
            any::<u64>().prop_map(Value::from),
            select(vec![json!(0), json!(383), json!(385), json!(-384), json!(384.5), json!("384"), json!([384])]),
        ]
        .prop_map(Some),
    ];
    let user = prop_oneof![4 => Just(None), 1 => arb_json().prop_map(Some)];
    (model, input, encoding, dimensions, user).prop_map(
        |(model, input, encoding, dimensions, user)| EmbedCase {
            model,
            input,
            encoding,
            dimensions,
            user,
        },
    )
}

fn render_embed(case: &EmbedCase) -> Vec<u8> {
    let mut top = Map::new();
    if let Some(m) = &case.model {
        top.insert("model".into(), m.clone());
    }
    let (p, serialized) = placeholder(0);
    let raw: Option<Vec<u8>> = match &case.input {
        Input::One(t) => {
            top.insert("input".into(), json!(t.render()));
            None
        }
        Input::List(items) => {
            let items: Vec<Value> = items
                .iter()
                .map(|i| match i {
                    Item::Text(t) => json!(t.render()),
                    Item::Other(v) => v.clone(),
                })
                .collect();
            top.insert("input".into(), Value::Array(items));
            None
        }
        Input::TooMany(n) => {
            let items: Vec<String> = (0..*n).map(|i| format!("t{i}")).collect();
            top.insert("input".into(), json!(items));
            None
        }
        Input::Other(v) => {
            top.insert("input".into(), v.clone());
            None
        }
        Input::Absent => None,
        Input::Escaped(units) => {
            top.insert("input".into(), p.clone());
            let lit: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
            Some(format!("\"{lit}\"").into_bytes())
        }
        Input::BadUtf8 => {
            top.insert("input".into(), p.clone());
            Some(b"\"ab\xff\xfe\xc0\x80\"".to_vec())
        }
    };
    if let Some(e) = &case.encoding {
        top.insert("encoding_format".into(), e.clone());
    }
    if let Some(d) = &case.dimensions {
        top.insert("dimensions".into(), d.clone());
    }
    if let Some(u) = &case.user {
        top.insert("user".into(), u.clone());
    }
    let json = serde_json::to_vec(&Value::Object(top)).unwrap();
    match raw {
        None => json,
        Some(raw) => {
            let at = find(&json, serialized.as_bytes()).unwrap();
            let mut out = json[..at].to_vec();
            out.extend_from_slice(&raw);
            out.extend_from_slice(&json[at + serialized.len()..]);
            out
        }
    }
}

/// The oracle: `Ok(texts)` must be 200 with one vector per text; `Err`
/// holds the acceptable statuses (400, or 404 for an unknown model).
fn embed_oracle(case: &EmbedCase) -> Result<Vec<String>, Vec<u16>> {
    let mut bad = false;
    let texts: Option<Vec<String>> = match &case.input {
        Input::One(t) => Some(vec![t.render()]),
        Input::List(items) => items
            .iter()
            .map(|i| match i {
                Item::Text(t) => Some(t.render()),
                Item::Other(_) => None,
            })
            .collect(),
        Input::TooMany(n) => Some((0..*n).map(|i| format!("t{i}")).collect()),
        Input::Other(_) | Input::Absent | Input::BadUtf8 => None,
        Input::Escaped(units) => {
            let lit: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
            serde_json::from_str::<String>(&format!("\"{lit}\""))
                .ok()
                .map(|s| vec![s])
        }
    };
    match &texts {
        Some(t) if !t.is_empty() && t.len() <= MAX_INPUTS && t.iter().all(|s| !s.is_empty()) => {}
        _ => bad = true,
    }
    match &case.encoding {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "float" || s == "base64" => {}
        _ => bad = true,
    }
    match &case.dimensions {
        None | Some(Value::Null) => {}
        Some(d) if d.as_u64() == Some(DIM as u64) => {}
        _ => bad = true,
    }
    let unknown_model = match &case.model {
        Some(Value::String(m)) => m != "minilm",
        _ => {
            bad = true;
            false
        }
    };
    match (bad, unknown_model) {
        (false, false) => Ok(texts.unwrap()),
        (true, false) => Err(vec![400]),
        (false, true) => Err(vec![404]),
        (true, true) => Err(vec![400, 404]),
    }
}

fn check_embed_ok(case: &EmbedCase, texts: &[String], r: &Reply) -> Result<(), TestCaseError> {
    let v: Value = serde_json::from_slice(&r.body).map_err(fail)?;
    prop_assert_eq!(&v["object"], "list");
    prop_assert_eq!(&v["model"], "minilm");
    let data = v["data"].as_array().ok_or_else(|| fail("no data"))?;
    prop_assert_eq!(data.len(), texts.len(), "one vector per text");
    let base64 = case.encoding == Some(json!("base64"));
    let mut vectors: Vec<Vec<f32>> = Vec::new();
    for (i, d) in data.iter().enumerate() {
        prop_assert_eq!(&d["index"], &json!(i));
        prop_assert_eq!(&d["object"], "embedding");
        let vector: Vec<f32> = if base64 {
            let b = d["embedding"].as_str().ok_or_else(|| fail("not base64"))?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(fail)?;
            prop_assert_eq!(raw.len(), DIM * 4);
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        } else {
            let fs = d["embedding"]
                .as_array()
                .ok_or_else(|| fail("not floats"))?;
            let vs: Option<Vec<f32>> = fs.iter().map(|f| f.as_f64().map(|f| f as f32)).collect();
            vs.ok_or_else(|| fail(format!("non-numbers in embedding {i} (NaN?)")))?
        };
        prop_assert_eq!(vector.len(), DIM);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        prop_assert!(
            vector.iter().all(|x| x.is_finite()) && (norm - 1.0).abs() < 1e-3,
            "embedding {} is not a unit vector (norm {})",
            i,
            norm
        );
        vectors.push(vector);
    }
    for i in 0..texts.len() {
        for j in i + 1..texts.len() {
            if texts[i] == texts[j] {
                prop_assert_eq!(&vectors[i], &vectors[j], "the same text twice");
            }
        }
    }
    let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    prop_assert!(tokens >= texts.len() as u64, "usage {}", v["usage"]);
    Ok(())
}

#[test]
fn embeddings_survive_hostile_bodies() {
    let h = Harness::start(|a| {
        a.models = vec![minilm()];
        a.max_request_size = Some(ByteSize::mib(2));
    });
    let sides = Sides::new("valid", "invalid");
    h.run(EMBED_CASES, embed_case(), |case| {
        h.rt.block_on(async {
            let body = render_embed(&case);
            let want = embed_oracle(&case);
            let r = http(
                h.addr.as_str(),
                "POST",
                "/v1/embeddings",
                &[("content-type", b"application/json")],
                &body,
                Framing::Length,
            )
            .await;
            let context = || {
                format!(
                    "body ({} bytes) {}\nanswer {} {}",
                    body.len(),
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(600)
                        .collect::<String>(),
                    r.status,
                    r.text()
                )
            };
            match want {
                Ok(texts) => {
                    sides.count(true);
                    prop_assert_eq!(r.status, 200, "valid request refused: {}", context());
                    check_embed_ok(&case, &texts, &r)
                        .map_err(|e| fail(format!("{e}\n{}", context())))?;
                }
                Err(allowed) => {
                    sides.count(false);
                    openai_error(&r, &allowed).map_err(|e| fail(format!("{e}\n{}", context())))?;
                }
            }
            Ok(())
        })
    });
    sides.check("embeddings", [EMBED_CASES / 10; 2]);
    // Bodies beyond the limit, declared or sent, and junk bodies.
    h.rt.block_on(async {
        let addr = h.addr.as_str();
        refuses_declared_size(addr, "POST", "/v1/embeddings", b"{}").await;
        let post = |body: Vec<u8>| async move {
            http(addr, "POST", "/v1/embeddings", &[], &body, Framing::Length).await
        };
        let big = json!({"model": "minilm", "input": "a".repeat(3 << 20)});
        let r = post(serde_json::to_vec(&big).unwrap()).await;
        openai_error(&r, &[413]).unwrap();
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"[]",
            b"null",
            b"{\"model\":\"minilm\",\"input\":\"a\"",
            &[b'['; 100_000],
        ] {
            openai_error(&post(junk.to_vec()).await, &[400]).unwrap();
        }
        healthy(&h.addr).await.unwrap();
    });
    h.stop();
}
