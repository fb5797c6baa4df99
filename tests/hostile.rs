//! Hostile input: property tests that throw adversarial bodies, headers,
//! keys, query strings and config files at every decoder, through the real
//! server (one per test, on a loopback port) and through the config loader.
//!
//! Every case is judged by an oracle written from the documented contract,
//! not from the code: a request that must work gets 200 (checked in
//! detail); anything else gets a 4xx with a JSON error carrying a message,
//! never a 5xx, a hang or a crash, and the server keeps answering
//! `/healthz`. Declared sizes (shapes, `binary_data_size`,
//! `Inference-Header-Content-Length`, `Content-Length`) far beyond what was
//! sent are refused quickly, without allocating them.
//!
//! Requests go through a tiny raw HTTP/1.1 client so that paths, header
//! bytes and framing are exactly what the test says (reqwest would
//! normalise `.`/`%2E` path segments and refuse some header bytes).

mod common;

use std::{
    cell::Cell,
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::Engine;
use bytesize::ByteSize;
use common::{encode_key, model, temp_dir, TestServer};
use infercache::{config::ModelConfig, Config, ServeArgs};
use proptest::{
    collection::vec,
    prelude::*,
    sample::select,
    test_runner::{Config as PtConfig, TestCaseError, TestRunner},
};
use serde_json::{json, Map, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    runtime::Runtime,
};

// ---------------------------------------------------------------------------
// Harness: one runtime and one server per test, proptest driving cases.
// ---------------------------------------------------------------------------

// Cases per property: the whole file takes well under a minute in a debug
// build on two cores (the KServe and KV ones are cheap; embeddings run the
// real model; config cases never touch the network).
const INFER_CASES: u32 = 512;
const JUNK_CASES: u32 = 256;
const EMBED_CASES: u32 = 160;
const KV_CASES: u32 = 384;
const SHAPE_CASES: u32 = 256;
const CONFIG_CASES: u32 = 512;

/// Longest any single request may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(30);
/// Longest a refusal of an absurd declared size may take.
const QUICK: Duration = Duration::from_secs(5);

struct Harness {
    rt: Runtime,
    server: Option<TestServer>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start(tweak: impl FnOnce(&mut ServeArgs)) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = temp_dir();
        let server = rt.block_on(TestServer::start(dir.path(), tweak));
        let addr = server.base.strip_prefix("http://").unwrap().to_string();
        let h = Harness {
            rt,
            server: Some(server),
            addr,
            _dir: dir,
        };
        // Wait until it answers (models load before the listener serves).
        h.rt.block_on(async {
            for _ in 0..200 {
                if let Ok(Ok(r)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    try_http(&h.addr, "GET", "/healthz", &[], b"", Framing::Length),
                )
                .await
                {
                    if r.status == 200 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the server never became healthy");
        });
        h
    }

    /// Run `cases` cases of `strategy` through `check` (an async check run
    /// on this harness's runtime), then a health check after each case.
    fn run<S: Strategy>(
        &self,
        cases: u32,
        strategy: S,
        check: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        let mut runner = runner(cases);
        let result = runner.run(&strategy, |case| {
            check(case)?;
            self.rt.block_on(healthy(&self.addr))
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    fn stop(mut self) {
        let server = self.server.take().unwrap();
        self.rt.block_on(server.stop());
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        // Only this file is ours: no regression files next to it.
        failure_persistence: None,
        max_shrink_iters: 400,
        ..PtConfig::default()
    })
}

async fn healthy(addr: &str) -> Result<(), TestCaseError> {
    let r = http(addr, "GET", "/healthz", &[], b"", Framing::Length).await;
    prop_assert_eq!(r.status, 200, "healthz after the case: {}", r.text());
    let v: Value = serde_json::from_slice(&r.body).map_err(fail)?;
    prop_assert_eq!(&v["status"], "ok");
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client: exact bytes in, status/headers/body out.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length` of the body sent.
    Length,
    /// `Content-Length: N` whatever is actually sent.
    Declared(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    elapsed: Duration,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(400).collect()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn try_http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    framing: Framing,
) -> std::io::Result<Reply> {
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length => req.extend(format!("content-length: {}\r\n\r\n", body.len()).bytes()),
        Framing::Declared(n) => req.extend(format!("content-length: {n}\r\n\r\n").bytes()),
        Framing::Chunked => req.extend(b"transfer-encoding: chunked\r\n\r\n"),
    }
    match framing {
        Framing::Chunked => {
            for chunk in body.chunks(64 << 10) {
                req.extend(format!("{:x}\r\n", chunk.len()).bytes());
                req.extend_from_slice(chunk);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"0\r\n\r\n");
        }
        _ => req.extend_from_slice(body),
    }
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    // Write while reading: a server may answer (413) before the body is in.
    // The write half stays open until the answer is read (a half-close
    // could cancel the request).
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&req).await;
        wr
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after an early answer: keep what arrived.
            Err(e) if !raw.is_empty() => {
                let _ = e;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    drop(writer.await);
    let elapsed = started.elapsed();
    let end = find(&raw, b"\r\n\r\n").ok_or_else(|| {
        std::io::Error::other(format!(
            "no response head in {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })?;
    let mut lines = raw[..end].split(|b| *b == b'\n');
    let status_line = String::from_utf8_lossy(lines.next().unwrap()).to_string();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let colon = l.iter().position(|b| *b == b':')?;
            let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
            let mut value = &l[colon + 1..];
            while let [b' ' | b'\t', rest @ ..] = value {
                value = rest;
            }
            Some((name, value.to_vec()))
        })
        .collect();
    let rest = &raw[end + 4..];
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
        elapsed,
    };
    if method == "HEAD" {
        return Ok(reply);
    }
    reply.body = if reply
        .header_str("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        dechunk(rest)
    } else if let Some(len) = reply
        .header_str("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(reply)
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(rest, b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap().trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let stop = (start + size).min(rest.len());
        out.extend_from_slice(&rest[start..stop]);
        rest = &rest[(stop + 2).min(rest.len())..];
    }
    out
}

/// One request; panics (failing the case) on a hang or a dropped
/// connection without an answer.
async fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    framing: Framing,
) -> Reply {
    match tokio::time::timeout(HANG, try_http(addr, method, target, headers, body, framing)).await {
        Err(_) => panic!("{method} {target}: no answer within {HANG:?} (hang)"),
        Ok(Err(e)) => panic!("{method} {target}: no HTTP answer: {e}"),
        Ok(Ok(r)) => r,
    }
}

/// A KServe-shaped error: one of `allowed`, JSON `{"error": "<message>"}`.
fn kserve_error(r: &Reply, allowed: &[u16]) -> Result<(), TestCaseError> {
    prop_assert!(
        allowed.contains(&r.status),
        "status {} not in {:?}; body {}",
        r.status,
        allowed,
        r.text()
    );
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| fail(format!("error body is not JSON ({e}): {}", r.text())))?;
    let message = v["error"].as_str().unwrap_or_default();
    prop_assert!(!message.trim().is_empty(), "no error message in {}", v);
    Ok(())
}

/// An OpenAI-shaped error: `{"error": {"message": "...", "type": "..."}}`.
fn openai_error(r: &Reply, allowed: &[u16]) -> Result<(), TestCaseError> {
    prop_assert!(
        allowed.contains(&r.status),
        "status {} not in {:?}; body {}",
        r.status,
        allowed,
        r.text()
    );
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| fail(format!("error body is not JSON ({e}): {}", r.text())))?;
    let message = v["error"]["message"].as_str().unwrap_or_default();
    prop_assert!(!message.trim().is_empty(), "no error message in {}", v);
    prop_assert!(v["error"]["type"].is_string(), "no error type in {}", v);
    Ok(())
}

// ---------------------------------------------------------------------------
// Shared generators.
// ---------------------------------------------------------------------------

/// Deterministic bytes from a seed (splitmix64), so cases stay small to
/// print and shrink.
fn bytes_from(seed: u64, len: usize) -> Vec<u8> {
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
fn hostile_char() -> impl Strategy<Value = char> {
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

fn hostile_string(max: usize) -> impl Strategy<Value = String> {
    vec(hostile_char(), 0..=max).prop_map(|cs| cs.into_iter().collect())
}

/// Arbitrary JSON trees, with KServe/OpenAI words for keys and strings so
/// that they get past the first checks now and then.
fn arb_json() -> impl Strategy<Value = Value> {
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
fn placeholder(i: usize) -> (Value, String) {
    let p = Value::String(format!("\u{1}RAW{i}\u{1}"));
    let text = serde_json::to_string(&p).unwrap();
    (p, text)
}

// ---------------------------------------------------------------------------
// 1. KServe infer against `mlp` (x: FP32 [-1, 16] -> y: FP32 [-1, 4]).
// ---------------------------------------------------------------------------

const MAX_REQUEST: u64 = 1 << 20;

#[derive(Debug, Clone)]
enum Nest {
    Flat,
    /// Rows of this many elements: `[[..], [..]]`.
    Rows(usize),
    /// Every element in its own array: `[[a], [b]]`.
    Each,
    /// The flat array wrapped in this many more arrays.
    Deep(usize),
}

#[derive(Debug, Clone)]
enum Size {
    Exact,
    Off(i64),
    Lit(Value),
}

#[derive(Debug, Clone)]
enum Tail {
    Exact,
    Len(usize),
}

#[derive(Debug, Clone)]
enum Data {
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
struct InputCase {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    data: Data,
}

#[derive(Debug, Clone)]
enum HeaderLen {
    /// Present (the JSON's length) exactly when binary data follows.
    Auto,
    Exact,
    Absent,
    Delta(i64),
    Number(u64),
    Junk(Vec<u8>),
}

#[derive(Debug, Clone)]
struct InferCase {
    inputs: Vec<InputCase>,
    id: Option<Value>,
    binary_output: Option<Value>,
    outputs: Option<Vec<(String, Option<Value>)>>,
    header: HeaderLen,
    junk_tail: Vec<u8>,
}

fn datatype_size(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        _ => return None,
    })
}

fn elements(shape: &[i64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |n, d| {
        u64::try_from(*d).ok().and_then(|d| n.checked_mul(d))
    })
}

fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..=20,
        2 => select(vec![
            15, 16, 17, 1 << 20, 1 << 31, 1 << 40, 1 << 58, 1 << 62, i64::MAX, -1, -16, i64::MIN,
        ]),
        1 => any::<i64>(),
    ]
}

fn shape() -> impl Strategy<Value = Vec<i64>> {
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

fn text_junk() -> impl Strategy<Value = String> {
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

fn data_for(declared: Option<usize>) -> BoxedStrategy<Data> {
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

fn input_case() -> impl Strategy<Value = InputCase> {
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

fn infer_case() -> impl Strategy<Value = InferCase> {
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
struct Rendered {
    json: String,
    body: Vec<u8>,
    header: Option<Vec<u8>>,
    /// Per input: the literal `data` text, if any.
    data_texts: Vec<Option<String>>,
    /// Per input: the `binary_data_size` value sent, if any.
    sizes: Vec<Option<Value>>,
}

fn element(seed: u64, i: usize) -> Value {
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

fn render_data(count: usize, seed: u64, poison: &Option<(usize, Value)>, nest: &Nest) -> String {
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

fn render_infer(case: &InferCase) -> Rendered {
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

/// Flattened element count of a `data` value if every leaf is a number.
fn numbers_in(v: &Value) -> Option<u64> {
    match v {
        Value::Number(_) => Some(1),
        Value::Array(items) => items.iter().try_fold(0u64, |n, i| Some(n + numbers_in(i)?)),
        _ => None,
    }
}

/// The oracle: `Some(rows)` when the request is valid (must be 200), from
/// the KServe v2 contract and the model's signature alone.
fn infer_oracle(case: &InferCase, r: &Rendered) -> Option<u64> {
    // Where the JSON ends: a whole number of bytes within the body.
    let split = match &r.header {
        None => r.body.len(),
        Some(h) => {
            if h.is_empty() || !h.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(h).ok()?.parse::<usize>().ok()?
        }
    };
    if split > r.body.len() || split < r.json.len() {
        return None;
    }
    // JSON followed by JSON whitespace is still that JSON.
    if !r.body[r.json.len()..split]
        .iter()
        .all(|b| b" \t\r\n".contains(b))
    {
        return None;
    }
    let binary = (r.body.len() - split) as u64;
    if !matches!(case.id, None | Some(Value::Null | Value::String(_))) {
        return None;
    }
    if !matches!(case.binary_output, None | Some(Value::Bool(_))) {
        return None;
    }
    for (name, p) in case.outputs.iter().flatten() {
        if name != "y" || !matches!(p, None | Some(Value::Bool(_))) {
            return None;
        }
    }
    // Each output may be named once (a repeat would be built and sent again).
    if case.outputs.iter().flatten().count() > 1 {
        return None;
    }
    let [input] = &case.inputs[..] else {
        return None;
    };
    if input.name != "x" || input.datatype != "FP32" {
        return None;
    }
    let [rows, 16] = input.shape[..] else {
        return None;
    };
    // Past max_request_size nothing is valid (and the products overflow).
    let rows = u64::try_from(rows)
        .ok()
        .filter(|n| (1..=MAX_REQUEST / 64).contains(n))?;
    let data = match &r.data_texts[0] {
        None => None,
        Some(t) => match serde_json::from_str::<Value>(t).ok()? {
            Value::Null => None,
            v => Some(v),
        },
    };
    match (data, &r.sizes[0]) {
        (Some(v), None) => (numbers_in(&v)? == rows * 16 && binary == 0).then_some(rows),
        (None, Some(size)) => (size.as_u64()? == rows * 64 && binary == rows * 64).then_some(rows),
        _ => None,
    }
}

/// Check a 200 answer for `rows` rows in detail.
fn check_infer_ok(case: &InferCase, r: &Reply, rows: u64) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(r.header_str("x-cache"), Some("hit" | "miss" | "coalesced")),
        "x-cache {:?}",
        r.header_str("x-cache")
    );
    let binary = case
        .outputs
        .iter()
        .flatten()
        .find_map(|(name, p)| match p {
            Some(Value::Bool(b)) if name == "y" => Some(*b),
            _ => None,
        })
        .or(match case.binary_output {
            Some(Value::Bool(b)) => Some(b),
            _ => None,
        })
        .unwrap_or(false);
    let wanted = match &case.outputs {
        Some(list) if !list.is_empty() => list.len(),
        _ => 1,
    };
    let json_len = match r.header_str("inference-header-content-length") {
        Some(h) => {
            prop_assert!(binary, "binary answer to a JSON request");
            h.parse::<usize>().map_err(fail)?
        }
        None => {
            prop_assert!(!binary, "JSON answer to a binary request");
            r.body.len()
        }
    };
    prop_assert!(json_len <= r.body.len());
    let v: Value = serde_json::from_slice(&r.body[..json_len]).map_err(fail)?;
    prop_assert_eq!(&v["model_name"], "mlp");
    if let Some(Value::String(id)) = &case.id {
        prop_assert_eq!(&v["id"], id.as_str());
    }
    let outputs = v["outputs"]
        .as_array()
        .ok_or_else(|| fail(format!("no outputs: {v}")))?;
    prop_assert_eq!(outputs.len(), wanted, "{}", v);
    for o in outputs {
        prop_assert_eq!(&o["name"], "y");
        prop_assert_eq!(&o["datatype"], "FP32");
        prop_assert_eq!(&o["shape"], &json!([rows, 4]));
        if binary {
            prop_assert_eq!(&o["parameters"]["binary_data_size"], &json!(rows * 16));
            prop_assert!(o.get("data").is_none());
        } else {
            let data = o["data"]
                .as_array()
                .ok_or_else(|| fail(format!("no data: {o}")))?;
            prop_assert_eq!(data.len() as u64, rows * 4);
            // Non-finite results are JSON null; anything else is a number.
            prop_assert!(data.iter().all(|d| d.is_number() || d.is_null()));
        }
    }
    let tail = (r.body.len() - json_len) as u64;
    prop_assert_eq!(tail, if binary { wanted as u64 * rows * 16 } else { 0 });
    Ok(())
}

fn shown(r: &Rendered) -> String {
    let body = String::from_utf8_lossy(&r.body);
    let body: String = body.chars().take(600).collect();
    format!(
        "header {:?}, body ({} bytes) {body}",
        r.header
            .as_ref()
            .map(|h| String::from_utf8_lossy(h).to_string()),
        r.body.len()
    )
}

/// One structured case: `Some(true)` if it was valid (200).
async fn infer_one(addr: &str, case: &InferCase) -> Result<bool, TestCaseError> {
    let r = render_infer(case);
    let want = infer_oracle(case, &r);
    let mut headers: Vec<(&str, &[u8])> = vec![("content-type", b"application/json")];
    if let Some(h) = &r.header {
        headers.push(("inference-header-content-length", h));
    }
    let reply = http(
        addr,
        "POST",
        "/v2/models/mlp/infer",
        &headers,
        &r.body,
        Framing::Length,
    )
    .await;
    let context = || format!("{}\nanswer {} {}", shown(&r), reply.status, reply.text());
    match want {
        Some(rows) => {
            prop_assert_eq!(reply.status, 200, "valid request refused: {}", context());
            check_infer_ok(case, &reply, rows).map_err(|e| fail(format!("{e}\n{}", context())))?;
        }
        None => {
            kserve_error(&reply, &[400]).map_err(|e| fail(format!("{e}\n{}", context())))?;
            let absurd = case
                .inputs
                .iter()
                .any(|i| elements(&i.shape).is_none_or(|n| n.saturating_mul(4) > MAX_REQUEST))
                || r.sizes
                    .iter()
                    .flatten()
                    .any(|s| s.as_u64().is_some_and(|n| n > MAX_REQUEST));
            if absurd {
                prop_assert!(
                    reply.elapsed < QUICK,
                    "an absurd declared size took {:?}: {}",
                    reply.elapsed,
                    context()
                );
            }
        }
    }
    Ok(want.is_some())
}

/// Peak resident memory of this process (server included), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn kserve_infer_survives_hostile_bodies() {
    let h = Harness::start(|a| {
        a.models = vec![model("mlp", "mlp")];
        a.max_request_size = Some(ByteSize::b(MAX_REQUEST));
    });
    let rss_before = peak_rss();

    // Structurally plausible requests, judged by the oracle.
    let (valid, invalid) = (Cell::new(0u32), Cell::new(0u32));
    h.run(INFER_CASES, infer_case(), |case| {
        let ok = h.rt.block_on(infer_one(&h.addr, &case))?;
        let counter = if ok { &valid } else { &invalid };
        counter.set(counter.get() + 1);
        Ok(())
    });
    eprintln!(
        "kserve: {} valid, {} invalid structured cases",
        valid.get(),
        invalid.get()
    );
    assert!(
        valid.get() >= INFER_CASES / 10 && invalid.get() >= INFER_CASES / 10,
        "the generator must exercise both sides: {} valid, {} invalid",
        valid.get(),
        invalid.get()
    );

    // Arbitrary JSON, mutated valid requests, random bytes, odd routes:
    // 200 (well-formed) or a 4xx with a message, never anything else.
    let junk = prop_oneof![
        3 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        3 => (vec(any::<prop::sample::Index>(), 1..6), arb_json()).prop_map(|(path, v)| {
            let mut valid = json!({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                "data": vec![0.25f32; 16]}], "outputs": [{"name": "y"}]});
            replace_at(&mut valid, &path, v);
            serde_json::to_vec(&valid).unwrap()
        }),
        1 => vec(any::<u8>(), 0..512),
    ];
    let route = prop_oneof![
        8 => Just("/v2/models/mlp/infer".to_string()),
        1 => Just("/v2/models/mlp/versions/1/infer".to_string()),
        1 => vec(any::<u8>(), 1..12).prop_map(|b| format!("/v2/models/mlp/versions/{}/infer", encode_key(&b))),
        1 => vec(any::<u8>(), 1..12).prop_map(|b| format!("/v2/models/{}/infer", encode_key(&b))),
    ];
    let header = prop_oneof![
        6 => Just(None),
        1 => (0usize..600).prop_map(|n| Some(n.to_string().into_bytes())),
        1 => vec(prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff], 0..10).prop_map(Some),
    ];
    let (ok, refused) = (Cell::new(0u32), Cell::new(0u32));
    h.run(
        JUNK_CASES,
        (junk, route, header),
        |(body, route, header)| {
            h.rt.block_on(async {
                let mut headers: Vec<(&str, &[u8])> = Vec::new();
                if let Some(v) = &header {
                    headers.push(("inference-header-content-length", v));
                }
                let reply = http(&h.addr, "POST", &route, &headers, &body, Framing::Length).await;
                let context = format!(
                    "{route} header {:?} body {}",
                    header
                        .as_ref()
                        .map(|h| String::from_utf8_lossy(h).to_string()),
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(600)
                        .collect::<String>()
                );
                if reply.status == 200 {
                    ok.set(ok.get() + 1);
                    prop_assert!(reply.header("x-cache").is_some(), "{}", context);
                } else {
                    refused.set(refused.get() + 1);
                    kserve_error(&reply, &[400, 404])
                        .map_err(|e| fail(format!("{e}\n{context}")))?;
                }
                Ok(())
            })
        },
    );
    eprintln!(
        "kserve junk: {} answered 200, {} refused",
        ok.get(),
        refused.get()
    );
    assert!(refused.get() > 0);

    // Declared sizes far beyond what is sent, and bodies over the limit.
    h.rt.block_on(async {
        let quick = |r: &Reply, status: u16, what: &str| {
            assert_eq!(r.status, status, "{what}: {}", r.text());
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["error"].is_string(), "{what}: {v}");
            assert!(r.elapsed < QUICK, "{what} took {:?}", r.elapsed);
        };
        let post = |body: Vec<u8>, header: Option<String>, framing: Framing| {
            let addr = h.addr.clone();
            async move {
                let mut headers: Vec<(&str, &[u8])> = Vec::new();
                if let Some(v) = &header {
                    headers.push(("inference-header-content-length", v.as_bytes()));
                }
                http(&addr, "POST", "/v2/models/mlp/infer", &headers, &body, framing).await
            }
        };
        let x = |shape: Value, params: Value| {
            serde_json::to_vec(&json!({"inputs": [{"name": "x", "shape": shape,
                "datatype": "FP32", "parameters": params}]}))
            .unwrap()
        };
        let r = post(x(json!([1u64 << 40, 1u64 << 40]), json!({})), None, Framing::Length).await;
        quick(&r, 400, "shape [2^40, 2^40]");
        let r = post(
            x(json!([1u64 << 58]), json!({"binary_data_size": 1u64 << 60})),
            Some("72".into()),
            Framing::Length,
        )
        .await;
        quick(&r, 400, "binary_data_size 2^60 with a matching shape");
        let header = x(json!([1, 16]), json!({"binary_data_size": 1u64 << 60}));
        let len = header.len();
        let mut body = header;
        body.extend([0u8; 64]);
        let r = post(body, Some(len.to_string()), Framing::Length).await;
        quick(&r, 400, "binary_data_size 2^60 for [1, 16]");
        let r = post(b"{}".to_vec(), Some((1u64 << 60).to_string()), Framing::Length).await;
        quick(&r, 400, "Inference-Header-Content-Length 2^60");
        let r = post(b"{\"inputs\": []}".to_vec(), None, Framing::Declared(1 << 60)).await;
        quick(&r, 413, "Content-Length 2^60");
        let r = post(vec![b' '; MAX_REQUEST as usize + 1], None, Framing::Length).await;
        quick(&r, 413, "a body one byte over max_request_size");
        let r = post(vec![b' '; 3 * MAX_REQUEST as usize / 2], None, Framing::Chunked).await;
        quick(&r, 413, "a chunked body over max_request_size");
        let deep = format!(
            "{{\"inputs\":[{{\"name\":\"x\",\"shape\":[1,16],\"datatype\":\"FP32\",\"data\":{}{}}}]}}",
            "[".repeat(400_000),
            "]".repeat(400_000)
        );
        let r = post(deep.into_bytes(), None, Framing::Length).await;
        quick(&r, 400, "data nested 400000 deep");
        let deep = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
        let r = post(deep.into_bytes(), None, Framing::Length).await;
        quick(&r, 400, "a body nested 500000 deep");
        let valid = r#"{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#;
        let utf16: Vec<u8> = valid.encode_utf16().flat_map(u16::to_le_bytes).collect();
        for (what, body) in [
            ("duplicate `inputs`", format!("{{\"inputs\":[],{}", &valid[1..]).into_bytes()),
            ("trailing garbage", format!("{valid}xyz").into_bytes()),
            ("trailing NUL", format!("{valid}\0").into_bytes()),
            ("two documents", format!("{valid}{valid}").into_bytes()),
            ("UTF-16", utf16),
            ("NUL in the name", valid.replace("\"x\"", "\"x\\u0000\"").into_bytes()),
        ] {
            let r = post(body, None, Framing::Length).await;
            quick(&r, 400, what);
        }
        let r = post(valid.as_bytes().to_vec(), None, Framing::Length).await;
        assert_eq!(r.status, 200, "the valid one: {}", r.text());
        healthy(&h.addr).await.unwrap();
    });
    if let (Some(before), Some(after)) = (rss_before, peak_rss()) {
        eprintln!(
            "kserve: peak RSS grew by {} MiB",
            after.saturating_sub(before) >> 20
        );
        assert!(
            after.saturating_sub(before) < 512 << 20,
            "peak RSS grew by {} MiB: something allocated from a declared size",
            (after - before) >> 20
        );
    }
    h.stop();
}

/// Replace the node that `path` leads to (indices pick children, modulo
/// their number; a leaf ends the walk).
fn replace_at(node: &mut Value, path: &[prop::sample::Index], with: Value) {
    let Some((step, rest)) = path.split_first() else {
        *node = with;
        return;
    };
    match node {
        Value::Array(items) if !items.is_empty() => {
            let i = step.index(items.len());
            replace_at(&mut items[i], rest, with)
        }
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step.index(map.len())).unwrap().clone();
            replace_at(map.get_mut(&key).unwrap(), rest, with)
        }
        _ => *node = with,
    }
}

// ---------------------------------------------------------------------------
// 1b. Zero and huge dimensions against every model, minilm included.
// ---------------------------------------------------------------------------

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
        &h.addr,
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

// ---------------------------------------------------------------------------
// 2. /v1/embeddings against the real all-MiniLM-L6-v2.
// ---------------------------------------------------------------------------

fn minilm() -> ModelConfig {
    let asset = |file: &str| -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("assets/models/minilm")
            .join(file)
    };
    ModelConfig {
        tokenizer: Some(asset("tokenizer.json")),
        threads: 2,
        ..ModelConfig::new("minilm", asset("model.onnx"))
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
    let (valid, invalid) = (Cell::new(0u32), Cell::new(0u32));
    h.run(EMBED_CASES, embed_case(), |case| {
        h.rt.block_on(async {
            let body = render_embed(&case);
            let want = embed_oracle(&case);
            let r = http(
                &h.addr,
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
                    valid.set(valid.get() + 1);
                    prop_assert_eq!(r.status, 200, "valid request refused: {}", context());
                    check_embed_ok(&case, &texts, &r)
                        .map_err(|e| fail(format!("{e}\n{}", context())))?;
                }
                Err(allowed) => {
                    invalid.set(invalid.get() + 1);
                    openai_error(&r, &allowed).map_err(|e| fail(format!("{e}\n{}", context())))?;
                }
            }
            Ok(())
        })
    });
    eprintln!(
        "embeddings: {} valid, {} invalid cases",
        valid.get(),
        invalid.get()
    );
    assert!(
        valid.get() >= EMBED_CASES / 10 && invalid.get() >= EMBED_CASES / 10,
        "the generator must exercise both sides: {} valid, {} invalid",
        valid.get(),
        invalid.get()
    );
    // Bodies beyond the limit, declared or sent, and junk bodies.
    h.rt.block_on(async {
        let r = http(
            &h.addr,
            "POST",
            "/v1/embeddings",
            &[],
            b"{}",
            Framing::Declared(1 << 60),
        )
        .await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.elapsed < QUICK);
        let big =
            serde_json::to_vec(&json!({"model": "minilm", "input": "a".repeat(3 << 20)})).unwrap();
        let r = http(
            &h.addr,
            "POST",
            "/v1/embeddings",
            &[],
            &big,
            Framing::Length,
        )
        .await;
        openai_error(&r, &[413]).unwrap();
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"[]",
            b"null",
            b"{\"model\":\"minilm\",\"input\":\"a\"",
            &[b'['; 100_000],
        ] {
            let r = http(
                &h.addr,
                "POST",
                "/v1/embeddings",
                &[],
                junk,
                Framing::Length,
            )
            .await;
            openai_error(&r, &[400]).unwrap();
        }
        healthy(&h.addr).await.unwrap();
    });
    h.stop();
}

// ---------------------------------------------------------------------------
// 3. KV keys and query strings.
// ---------------------------------------------------------------------------

const MAX_KEY: usize = 1024;
const MAX_TTL: u64 = 10 * 365 * 24 * 3600;

#[derive(Debug, Clone)]
enum KeyStyle {
    /// Every byte `%XX`, upper-case hex.
    Upper,
    /// Every byte `%xx`, lower-case hex.
    Lower,
    /// Unreserved bytes as themselves, the rest `%XX`.
    Mixed,
    /// Mixed, with a stray `%` sequence inserted (decoding is lenient or
    /// strict; either way a 204 must round-trip).
    Malformed(prop::sample::Index, &'static str),
}

#[derive(Debug, Clone)]
struct KvCase {
    key: Vec<u8>,
    style: KeyStyle,
    query: Option<Vec<String>>,
    value: (u64, usize),
    content_type: Option<Vec<u8>>,
}

fn encode(key: &[u8], style: &KeyStyle) -> String {
    let mixed = || -> String {
        key.iter()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                    (*b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    match style {
        KeyStyle::Upper => encode_key(key),
        KeyStyle::Lower => key.iter().map(|b| format!("%{b:02x}")).collect(),
        KeyStyle::Mixed => mixed(),
        KeyStyle::Malformed(at, junk) => {
            let mut s = mixed();
            // Insert at a char boundary (the encoding is ASCII).
            let at = at.index(s.len() + 1);
            s.insert_str(at, junk);
            s
        }
    }
}

fn ttl_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1..=MAX_TTL).prop_map(|n| n.to_string()),
        1 => select(vec![
            "0", "1", "007", "00", "-1", "+5", "1.5", "1e3", "", "abc", "%31", "0x10",
            "315360000", "315360001", "18446744073709551615", "18446744073709551616",
            "99999999999999999999999",
        ])
        .prop_map(String::from),
        1 => vec(select(vec!['0', '1', '9', 'a', '-', '+', '.', '%', '=']), 0..22)
            .prop_map(|cs| cs.into_iter().collect()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
    ]
}

fn query_part() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => ttl_value().prop_map(|v| format!("ttl={v}")),
        1 => Just("ttl".to_string()),
        1 => Just(String::new()),
        1 => (select(vec!["TTL", "tll", "x", "", "ttl ", "ttl%3D"]), ttl_value())
            .prop_map(|(n, v)| format!("{n}={v}").replace(' ', "%20")),
    ]
}

/// `Some(true)`: valid; `Some(false)`: invalid; `None`: either is fine
/// (`+5`, which the contract does not settle).
fn query_ok(query: &Option<Vec<String>>) -> Option<bool> {
    let mut verdict = Some(true);
    for part in query.iter().flatten().filter(|p| !p.is_empty()) {
        let Some(value) = part.strip_prefix("ttl=") else {
            return Some(false);
        };
        let digits = value.strip_prefix('+').unwrap_or(value);
        let ok = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits
                .parse::<u64>()
                .is_ok_and(|n| (1..=MAX_TTL).contains(&n));
        if !ok {
            return Some(false);
        }
        if value.starts_with('+') {
            verdict = None;
        }
    }
    verdict
}

fn kv_case() -> impl Strategy<Value = KvCase> {
    let key = prop_oneof![
        4 => vec(any::<u8>(), 1..=16),
        2 => vec(any::<u8>(), 0..=200),
        2 => vec(any::<u8>(), MAX_KEY - 8..=MAX_KEY + 8),
        1 => vec(any::<u8>(), 0..=1100),
        1 => select(vec![
            b"".to_vec(), b".".to_vec(), b"..".to_vec(), b"/".to_vec(), b"%".to_vec(),
            b"%2F".to_vec(), b"\0".to_vec(), b"?".to_vec(), b"#".to_vec(), b" ".to_vec(),
            b"a/../b".to_vec(), vec![0xff; MAX_KEY], vec![b'a'; MAX_KEY + 1],
        ]),
    ];
    let style = prop_oneof![
        3 => Just(KeyStyle::Upper),
        1 => Just(KeyStyle::Lower),
        3 => Just(KeyStyle::Mixed),
        1 => (any::<prop::sample::Index>(), select(vec!["%", "%G", "%4", "%%", "%zz", "%2"]))
            .prop_map(|(i, j)| KeyStyle::Malformed(i, j)),
    ];
    let query = prop_oneof![
        4 => Just(None),
        4 => vec(query_part(), 0..=3).prop_map(Some),
    ];
    let content_type = prop_oneof![
        4 => Just(None),
        2 => vec(0x21u8..=0x7e, 1..40).prop_map(Some),
        1 => (vec(0x21u8..=0x7e, 0..8), 0x80u8..=0xff).prop_map(|(mut v, b)| {
            v.push(b);
            Some(v)
        }),
    ];
    (key, style, query, (any::<u64>(), 0usize..512), content_type).prop_map(
        |(key, style, query, value, content_type)| KvCase {
            key,
            style,
            query,
            value,
            content_type,
        },
    )
}

async fn kv_one(addr: &str, case: &KvCase) -> Result<Option<bool>, TestCaseError> {
    let path = format!("/v1/kv/{}", encode(&case.key, &case.style));
    let target = match &case.query {
        None => path.clone(),
        Some(parts) => format!("{path}?{}", parts.join("&")),
    };
    let value = bytes_from(case.value.0, case.value.1);
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    if let Some(ct) = &case.content_type {
        headers.push(("content-type", ct));
    }
    let key_ok = (1..=MAX_KEY).contains(&case.key.len());
    let ct_ok = case.content_type.as_ref().is_none_or(|c| c.is_ascii());
    let malformed = matches!(case.style, KeyStyle::Malformed(..));
    let want = match (malformed, query_ok(&case.query)) {
        (true, _) | (_, None) => None,
        (false, Some(q)) => Some(key_ok && q && ct_ok),
    };
    let put = http(addr, "PUT", &target, &headers, &value, Framing::Length).await;
    let context = |r: &Reply| {
        format!(
            "PUT {target} ({} bytes) -> {} {}",
            value.len(),
            r.status,
            r.text()
        )
    };
    if let Some(expect) = want {
        prop_assert_eq!(put.status == 204, expect, "{}", context(&put));
    }
    let get = http(addr, "GET", &path, &[], b"", Framing::Length).await;
    if put.status == 204 {
        prop_assert!(put.body.is_empty());
        prop_assert_eq!(get.status, 200, "GET after PUT: {}", context(&get));
        prop_assert_eq!(&get.body, &value, "{}", context(&get));
        let want_ct = case
            .content_type
            .clone()
            .unwrap_or_else(|| b"application/octet-stream".to_vec());
        prop_assert_eq!(get.header("content-type"), Some(&want_ct[..]));
        prop_assert!(matches!(
            get.header_str("x-cache-tier"),
            Some("memory" | "disk")
        ));
        let head = http(addr, "HEAD", &path, &[], b"", Framing::Length).await;
        prop_assert_eq!(head.status, 200, "HEAD: {}", context(&head));
        let del = http(addr, "DELETE", &path, &[], b"", Framing::Length).await;
        prop_assert_eq!(del.status, 204, "DELETE: {}", context(&del));
        let gone = http(addr, "GET", &path, &[], b"", Framing::Length).await;
        kserve_error(&gone, &[404]).map_err(|e| fail(format!("{e}\n{}", context(&gone))))?;
    } else {
        kserve_error(&put, &[400]).map_err(|e| fail(format!("{e}\n{}", context(&put))))?;
        let allowed: &[u16] = match (malformed, key_ok) {
            (true, _) => &[400, 404],
            (false, true) => &[404],
            (false, false) => &[400],
        };
        kserve_error(&get, allowed).map_err(|e| fail(format!("GET: {e}\n{}", context(&get))))?;
        let del = http(addr, "DELETE", &path, &[], b"", Framing::Length).await;
        if !malformed && !key_ok {
            kserve_error(&del, &[400]).map_err(|e| fail(format!("DELETE: {e}")))?;
        } else {
            prop_assert!(
                del.status == 204 || del.status == 400,
                "DELETE {}",
                del.status
            );
        }
    }
    Ok(Some(put.status == 204))
}

#[test]
fn kv_keys_and_queries_survive_hostile_input() {
    let h = Harness::start(|a| a.max_value_size = Some(ByteSize::kib(64)));
    let (stored, refused) = (Cell::new(0u32), Cell::new(0u32));
    h.run(KV_CASES, kv_case(), |case| {
        let stored_it = h.rt.block_on(kv_one(&h.addr, &case))?;
        let counter = if stored_it == Some(true) {
            &stored
        } else {
            &refused
        };
        counter.set(counter.get() + 1);
        Ok(())
    });
    eprintln!(
        "kv: {} stored, {} refused cases",
        stored.get(),
        refused.get()
    );
    assert!(
        stored.get() >= KV_CASES / 10 && refused.get() >= KV_CASES / 10,
        "the generator must exercise both sides: {} stored, {} refused",
        stored.get(),
        refused.get()
    );
    h.rt.block_on(async {
        // Declared and actual values over max_value_size.
        let r = http(
            &h.addr,
            "PUT",
            "/v1/kv/big",
            &[],
            b"x",
            Framing::Declared(1 << 60),
        )
        .await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.elapsed < QUICK);
        let r = http(
            &h.addr,
            "PUT",
            "/v1/kv/big",
            &[],
            &vec![7u8; (64 << 10) + 1],
            Framing::Chunked,
        )
        .await;
        kserve_error(&r, &[413]).unwrap();
        healthy(&h.addr).await.unwrap();
    });
    h.stop();
}

// ---------------------------------------------------------------------------
// 4. Config files through `Config::from_args`.
// ---------------------------------------------------------------------------

const TOP_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "memory_capacity",
    "disk_capacity",
    "max_value_size",
    "vram_units",
    "auth_token",
    "write_queue",
    "write_batch",
    "write_delay",
    "sweep_interval",
    "onnxruntime",
    "request_timeout",
    "max_request_size",
];

/// `[[model]]` keys besides `name` and `path` (always written first).
const MODEL_KEYS: &[&str] = &[
    "vram_units",
    "max_batch",
    "max_delay_ms",
    "threads",
    "instances",
    "queue",
    "ttl",
    "tokenizer",
    "max_tokens",
    "pooling",
    "normalize",
    "max_batch_tokens",
    "max_inputs",
];

/// A TOML basic string of `s` (JSON escapes are TOML escapes, except that
/// DEL is left raw, which TOML refuses: a fine hostile input too).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn toml_value() -> impl Strategy<Value = String> {
    let num = select(vec![
        "0",
        "1",
        "2",
        "16",
        "1.5",
        "-1",
        "1e30",
        "0.0000001",
        "18446744073709551615",
        "18446744073709551616",
        "999999999999999999999",
        "",
        " ",
        "4096",
    ]);
    let size_unit = select(vec![
        "", "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "KB", "kb", "k", "lots", "iB", " MiB",
    ]);
    let dur_unit = select(vec![
        "", "ns", "us", "µs", "ms", "s", "m", "min", "h", "d", "w", "M", "y", "years", " s",
    ]);
    prop_oneof![
        3 => (num.clone(), size_unit).prop_map(|(n, u)| toml_str(&format!("{n}{u}"))),
        3 => (num, dur_unit).prop_map(|(n, u)| toml_str(&format!("{n}{u}"))),
        3 => prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            select(vec![
                "0", "1", "-1", "4", "16", "99999999999999999999", "0x10", "1_000", "+1", "0o7",
                "4294967296", "18446744073709551615",
            ])
            .prop_map(String::from),
        ],
        1 => select(vec!["1.5", "inf", "nan", "-0.0", "1e400", "true", "false"]).prop_map(String::from),
        2 => select(vec![
            "127.0.0.1:0", "unix:", "unix:/tmp/x.sock", "[::1]:80", "localhost:80",
            "0.0.0.0:99999", "", " ", "mean", "cls", "MEAN", "m.onnx", "tok.json",
            "missing.onnx", ".", "/", "a\nb", "\u{0}",
        ])
        .prop_map(toml_str),
        2 => hostile_string(24).prop_map(|s| toml_str(&s)),
        1 => select(vec![
            "[1, \"a\"]", "{ a = 1 }", "[]", "{}", "1979-05-27T07:32:00Z", "'lit'", "'''ml'''",
            "\"\"\"\nml\"\"\"", "\"unterminated", "[", "{", "\"\\x\"", "\"\\uD800\"",
        ])
        .prop_map(String::from),
    ]
}

fn toml_key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(keys.to_vec()).prop_map(String::from),
        1 => select(vec!["model", "unknown", "Listen", "listen.x", "\"listen\"", "", "= ="])
            .prop_map(String::from),
        1 => hostile_string(8).prop_map(|s| toml_str(&s)),
    ]
}

fn toml_line(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    (toml_key(keys), toml_value()).prop_map(|(k, v)| format!("{k} = {v}"))
}

/// A value that suits `key` (so that whole files are often valid).
fn fitting_value(key: &str) -> BoxedStrategy<String> {
    let size = || {
        (1u32..1024, select(vec!["KiB", "MiB", "B", "KB"]))
            .prop_map(|(n, u)| format!("\"{n}{u}\""))
            .boxed()
    };
    let duration = || {
        (1u32..1000, select(vec!["ms", "s", "m", "h"]))
            .prop_map(|(n, u)| format!("\"{n}{u}\""))
            .boxed()
    };
    let count = |max: u32| (1..=max).prop_map(|n| n.to_string()).boxed();
    match key {
        "listen" => select(vec![
            "\"127.0.0.1:0\"",
            "\"unix:/tmp/x.sock\"",
            "\"[::1]:7600\"",
        ])
        .prop_map(String::from)
        .boxed(),
        "data_dir" | "onnxruntime" => hostile_string(12).prop_map(|s| toml_str(&s)).boxed(),
        "auth_token" => "[!-~]{1,24}".prop_map(|s| toml_str(&s)).boxed(),
        "memory_capacity" | "disk_capacity" | "max_value_size" | "max_request_size" => size(),
        "write_delay" | "sweep_interval" | "request_timeout" | "ttl" => duration(),
        "vram_units" => count(64),
        "write_queue" | "write_batch" | "queue" | "max_inputs" => count(10_000),
        "max_batch" | "threads" | "instances" => count(8),
        "max_delay_ms" => (0u32..100).prop_map(|n| n.to_string()).boxed(),
        "max_tokens" => count(512),
        "max_batch_tokens" => (512u32..20_000).prop_map(|n| n.to_string()).boxed(),
        "tokenizer" => Just("\"tok.json\"".to_string()).boxed(),
        "pooling" => select(vec!["\"mean\"", "\"cls\""])
            .prop_map(String::from)
            .boxed(),
        "normalize" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        _ => toml_value().boxed(),
    }
}

/// Lines for distinct keys among `keys` (duplicates are a TOML error that
/// would hide everything else), each value fitting or hostile, plus now
/// and then a line for an unknown or mangled key.
fn key_lines(keys: &'static [&'static str], most: usize) -> impl Strategy<Value = Vec<String>> {
    (
        proptest::sample::subsequence(keys.to_vec(), 0..=most),
        vec(toml_line(keys), 0..=1),
        prop::bool::weighted(0.15),
    )
        .prop_flat_map(|(chosen, extra, hostile_extra)| {
            let lines: Vec<BoxedStrategy<String>> = chosen
                .into_iter()
                .map(|key| {
                    prop_oneof![5 => fitting_value(key), 1 => toml_value()]
                        .prop_map(move |v| format!("{key} = {v}"))
                        .boxed()
                })
                .collect();
            lines.prop_map(move |mut lines| {
                if hostile_extra {
                    lines.extend(extra.iter().cloned());
                }
                lines
            })
        })
}

fn model_block() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        6 => select(vec!["mlp", "mlp2", "a.b-c_d"]).prop_map(|n| format!("name = \"{n}\"")),
        1 => prop_oneof![
            select(vec!["", "a b", "x\ny", "x\r", "../x", "é", "m/l"]).prop_map(String::from),
            Just("a".repeat(129)),
            hostile_string(10),
        ]
        .prop_map(|s| format!("name = {}", toml_str(&s))),
    ];
    let path = prop_oneof![
        6 => Just("path = \"m.onnx\"".to_string()),
        1 => select(vec!["missing.onnx", "", ".", "/", "a\nb.onnx", "m.onnx\0"])
            .prop_map(|p| format!("path = {}", toml_str(p))),
    ];
    (
        name,
        path,
        key_lines(MODEL_KEYS, 4),
        prop_oneof![
            8 => Just("[[model]]"),
            1 => select(vec!["[model]", "[[model]]\n[[model]]", "[[models]]"]),
        ],
    )
        .prop_map(|(name, path, mut lines, header)| {
            lines.insert(0, path);
            lines.insert(0, name);
            format!("{header}\n{}\n", lines.join("\n"))
        })
}

fn structured_config() -> impl Strategy<Value = String> {
    (key_lines(TOP_KEYS, 6), vec(model_block(), 0..3))
        .prop_map(|(lines, models)| format!("{}\n{}", lines.join("\n"), models.concat()))
}

/// A config file's bytes, shown as (lossy) text.
#[derive(Clone)]
struct File(Vec<u8>);

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

fn config_text() -> impl Strategy<Value = File> {
    let structured = structured_config();
    let mutated = (
        structured_config(),
        vec(
            (any::<prop::sample::Index>(), hostile_string(3), 0usize..4),
            1..4,
        ),
    )
        .prop_map(|(text, edits)| {
            let mut chars: Vec<char> = text.chars().collect();
            for (at, insert, delete) in edits {
                let at = at.index(chars.len() + 1);
                let end = (at + delete).min(chars.len());
                chars.splice(at..end, insert.chars());
            }
            chars.into_iter().collect::<String>()
        });
    prop_oneof![
        6 => structured.prop_map(String::into_bytes),
        3 => mutated.prop_map(String::into_bytes),
        2 => hostile_string(120).prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..200),
    ]
    .prop_map(File)
}

#[test]
fn config_loader_survives_hostile_files() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("m.onnx"), b"not really onnx").unwrap();
    std::fs::write(dir.path().join("tok.json"), b"{}").unwrap();
    let path = dir.path().join("infercache.toml");
    let (ok, err) = (Cell::new(0u32), Cell::new(0u32));
    let mut runner = runner(CONFIG_CASES);
    let result = runner.run(&config_text(), |File(text)| {
        std::fs::write(&path, &text).unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let shown = String::from_utf8_lossy(&text).to_string();
        let outcome = catch_unwind(AssertUnwindSafe(|| Config::from_args(&args)))
            .map_err(|_| fail(format!("Config::from_args panicked on {shown:?}")))?;
        match outcome {
            Ok(c) => {
                ok.set(ok.get() + 1);
                check_valid_config(&c, dir.path())
                    .map_err(|e| fail(format!("{e}\nfile {shown:?}")))?;
            }
            Err(e) => {
                err.set(err.get() + 1);
                let line = e.to_string();
                prop_assert!(
                    !line.contains(LINE_BREAKS),
                    "the error is not one line: {:?}\nfile {:?}",
                    line,
                    shown
                );
                prop_assert!(line.starts_with("invalid config: "), "{:?}", line);
                prop_assert!(!e.key.is_empty(), "no key named: {:?}", line);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("config: {} Ok, {} Err cases", ok.get(), err.get());
    assert!(
        ok.get() >= CONFIG_CASES / 20 && err.get() >= CONFIG_CASES / 10,
        "the generator must exercise both sides: {} Ok, {} Err",
        ok.get(),
        err.get()
    );
}

/// Values that once made the loader's one-line error span several lines
/// (found by the property above): user text echoed raw into the message.
#[test]
fn config_errors_stay_one_line_for_known_hostile_values() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("m.onnx"), b"not really onnx").unwrap();
    let path = dir.path().join("infercache.toml");
    let mut multi_line = Vec::new();
    for text in [
        "\"\\n\" = \"0\"\n",                              // toml's message quotes the key
        "\"\u{85}\" = 1",                                 // ditto, NEL
        "0\r\u{a1}= 1",                                   // the key taken from the line
        "\u{a1}\u{b}0= 1",                                // ditto, vertical tab
        "listen = \"a\\nb\"",                             // parse_listen echoes the value
        "[[model]]\nname = \"a\\nb\"\npath = \"m.onnx\"", // model name
        "[[model]]\nname = \"m\"\npath = \"a\\nb.onnx\"", // model path
        "[[model]]\nname = \"m\"\npath = \"m.onnx\"\ntokenizer = \"t\\rx\"", // tokenizer
    ] {
        std::fs::write(&path, text).unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let e = Config::from_args(&args).expect_err(text).to_string();
        if e.contains(LINE_BREAKS) {
            multi_line.push(format!("{text:?}\n    => {e:?}"));
        }
    }
    assert!(
        multi_line.is_empty(),
        "config errors that are not one line:\n{}",
        multi_line.join("\n")
    );
}

/// What ends a line somewhere: a terminal, a log collector, a text editor.
const LINE_BREAKS: [char; 7] = [
    '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{2028}', '\u{2029}',
];

/// What `Ok` promises: every documented bound holds.
fn check_valid_config(c: &Config, dir: &Path) -> Result<(), TestCaseError> {
    prop_assert!(c.memory_capacity > 0 && c.disk_capacity > 0);
    prop_assert!(c.max_value_size >= 1 && c.max_value_size <= c.disk_capacity);
    prop_assert!(c.vram_units >= 1 && c.write_queue >= 1 && c.write_batch >= 1);
    prop_assert!(!c.sweep_interval.is_zero() && !c.request_timeout.is_zero());
    prop_assert!(c.max_request_size > 0);
    prop_assert!(c.auth_token.as_ref().is_none_or(|t| !t.trim().is_empty()));
    for m in &c.models {
        prop_assert!(
            !m.name.is_empty()
                && m.name.len() <= 128
                && m.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
            "model name {:?}",
            m.name
        );
        prop_assert!(m.path.is_file(), "model path {:?}", m.path);
        prop_assert!(m.path.starts_with(dir) || m.path.is_absolute());
        prop_assert!(m.vram_units >= 1 && m.vram_units <= c.vram_units);
    }
    Ok(())
}
