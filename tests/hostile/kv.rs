//! KV keys and query strings.

use bytesize::ByteSize;
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestCaseError};

use crate::{
    common::{
        encode_key,
        raw_http::{http, Framing, Reply},
    },
    fail,
    gen::bytes_from,
    healthy, kserve_error, refuses_declared_size, Harness, Sides, KV_CASES,
};

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
    let sides = Sides::new("stored", "refused");
    h.run(KV_CASES, kv_case(), |case| {
        let stored_it = h.rt.block_on(kv_one(&h.addr, &case))?;
        sides.count(stored_it == Some(true));
        Ok(())
    });
    sides.check("kv", [KV_CASES / 10; 2]);
    h.rt.block_on(async {
        // Declared and actual values over max_value_size.
        refuses_declared_size(h.addr.as_str(), "PUT", "/v1/kv/big", b"x").await;
        let big = vec![7u8; (64 << 10) + 1];
        let r = http(
            h.addr.as_str(),
            "PUT",
            "/v1/kv/big",
            &[],
            &big,
            Framing::Chunked,
        )
        .await;
        kserve_error(&r, &[413]).unwrap();
        healthy(&h.addr).await.unwrap();
    });
    h.stop();
}
