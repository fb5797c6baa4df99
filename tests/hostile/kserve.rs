//! KServe infer against `mlp`: structured cases judged by the oracle,
//! junk bodies and routes, and declared sizes far beyond what is sent.

use bytesize::ByteSize;
use proptest::{collection::vec, prelude::*, test_runner::TestCaseError};
use serde_json::{json, Value};

use crate::{
    common::{
        encode_key, model,
        raw_http::{http, Framing, Reply},
    },
    fail,
    gen::arb_json,
    healthy,
    kserve_cases::{elements, infer_case, render_infer, InferCase, Rendered, MAX_REQUEST},
    kserve_error, Harness, Sides, INFER_CASES, JUNK_CASES, QUICK,
};

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
    let sides = Sides::new("valid", "invalid");
    h.run(INFER_CASES, infer_case(), |case| {
        let ok = h.rt.block_on(infer_one(&h.addr, &case))?;
        sides.count(ok);
        Ok(())
    });
    sides.check("kserve structured", [INFER_CASES / 10; 2]);

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
    let sides = Sides::new("answered 200", "refused");
    h.run(
        JUNK_CASES,
        (junk, route, header),
        |(body, route, header)| {
            h.rt.block_on(async {
                let mut headers: Vec<(&str, &[u8])> = Vec::new();
                if let Some(v) = &header {
                    headers.push(("inference-header-content-length", v));
                }
                let reply = http(
                    h.addr.as_str(),
                    "POST",
                    &route,
                    &headers,
                    &body,
                    Framing::Length,
                )
                .await;
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
                    sides.count(true);
                    prop_assert!(reply.header("x-cache").is_some(), "{}", context);
                } else {
                    sides.count(false);
                    kserve_error(&reply, &[400, 404])
                        .map_err(|e| fail(format!("{e}\n{context}")))?;
                }
                Ok(())
            })
        },
    );
    sides.check("kserve junk", [0, 1]);

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
                http(addr.as_str(), "POST", "/v2/models/mlp/infer", &headers, &body, framing).await
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
