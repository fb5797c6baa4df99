//! Hostile input: property tests that throw adversarial bodies, headers,
//! keys, query strings, protobuf messages and config files at every
//! decoder, through the real server (one per test, on a loopback port) and
//! through the config loader. One module per decoder:
//!
//! | module | decoder |
//! | --- | --- |
//! | `kserve` (cases in `kserve_cases`) | KServe v2 JSON and binary REST infer |
//! | `shapes` | declared dimensions, against every model |
//! | `embeddings` | OpenAI `/v1/embeddings` on the real text model |
//! | `kv` | KV keys (percent-decoding) and query strings |
//! | `grpc` | KServe v2 gRPC messages, structured and malformed |
//! | `config` | TOML config files |
//!
//! Every case is judged by an oracle written from the documented contract,
//! not from the code: a request that must work gets 200 (checked in
//! detail); anything else gets a 4xx with a JSON error carrying a message
//! (over gRPC: a status of the protocol), never a 5xx, a hang or a crash,
//! and the server keeps answering `/healthz`. Declared sizes (shapes,
//! `binary_data_size`, `Inference-Header-Content-Length`,
//! `Content-Length`) far beyond what was sent are refused quickly, without
//! allocating them.
//!
//! HTTP requests go through the raw client of `common::raw_http`, so that
//! paths, header bytes and framing are exactly what the test says.

#[path = "../common/mod.rs"]
mod common;

mod config;
mod embeddings;
mod gen;
mod grpc;
mod kserve;
mod kserve_cases;
mod kv;
mod shapes;

use std::{cell::Cell, time::Duration};

use common::{
    raw_http::{http, request, send, Framing, Peer, Reply},
    temp_dir, TestServer,
};
use infercache::ServeArgs;
use proptest::{
    prelude::*,
    test_runner::{Config as PtConfig, TestCaseError, TestRunner},
};
use serde_json::Value;
use tokio::runtime::Runtime;

// Cases per property: the whole binary takes well under a minute in a
// debug build on two cores (the KServe and KV ones are cheap; embeddings run the
// real model; config cases never touch the network).
const INFER_CASES: u32 = 512;
const JUNK_CASES: u32 = 256;
const EMBED_CASES: u32 = 160;
const KV_CASES: u32 = 384;
const SHAPE_CASES: u32 = 256;
const CONFIG_CASES: u32 = 512;
const GRPC_CASES: u32 = 384;

/// Longest a refusal of an absurd declared size may take.
const QUICK: Duration = Duration::from_secs(5);

/// One runtime and one server per test, proptest driving cases.
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
        let addr = server.addr().to_string();
        let h = Harness {
            rt,
            server: Some(server),
            addr,
            _dir: dir,
        };
        // Wait until it answers (models load before the listener serves).
        h.rt.block_on(async {
            for _ in 0..200 {
                let req = request(&h.addr, "GET", "/healthz", &[], b"", Framing::Length);
                let health = send(Peer::Tcp(&h.addr), "GET", req);
                if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), health).await {
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
        self.run_then(runner(cases), strategy, check, || {
            self.rt.block_on(healthy(&self.addr))
        });
    }

    /// Run `strategy` through `runner`, `check` then `after` each case.
    fn run_then<S: Strategy>(
        &self,
        mut runner: TestRunner,
        strategy: S,
        check: impl Fn(S::Value) -> Result<(), TestCaseError>,
        after: impl Fn() -> Result<(), TestCaseError>,
    ) {
        let result = runner.run(&strategy, |case| {
            check(case)?;
            after()
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
        // Only these files are ours: no regression files next to them.
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

/// How many cases fell on each side of an oracle: a property must
/// exercise both.
struct Sides {
    names: [&'static str; 2],
    counts: [Cell<u32>; 2],
}

impl Sides {
    fn new(first: &'static str, second: &'static str) -> Sides {
        Sides {
            names: [first, second],
            counts: Default::default(),
        }
    }

    /// Count one case, on the first side if `first`.
    fn count(&self, first: bool) {
        let side = &self.counts[usize::from(!first)];
        side.set(side.get() + 1);
    }

    /// Print the counts for `what`; fail unless each side has at least
    /// its `least`.
    fn check(&self, what: &str, least: [u32; 2]) {
        let [a, b] = [self.counts[0].get(), self.counts[1].get()];
        let [first, second] = self.names;
        eprintln!("{what}: {a} {first}, {b} {second} cases");
        assert!(
            a >= least[0] && b >= least[1],
            "the generator must exercise both sides: {a} {first}, {b} {second}"
        );
    }
}

/// `method path` declaring a 2^60-byte body (sending `body`): 413, quickly.
async fn refuses_declared_size(addr: &str, method: &str, path: &str, body: &[u8]) {
    let r = http(addr, method, path, &[], body, Framing::Declared(1 << 60)).await;
    assert_eq!(r.status, 413, "{method} {path}: {}", r.text());
    assert!(r.elapsed < QUICK, "{method} {path} took {:?}", r.elapsed);
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// A KServe-shaped error: one of `allowed`, JSON `{"error": "<message>"}`.
fn kserve_error(r: &Reply, allowed: &[u16]) -> Result<(), TestCaseError> {
    let v = error_body(r, allowed)?;
    let message = v["error"].as_str().unwrap_or_default();
    prop_assert!(!message.trim().is_empty(), "no error message in {}", v);
    Ok(())
}

/// An OpenAI-shaped error: `{"error": {"message": "...", "type": "..."}}`.
fn openai_error(r: &Reply, allowed: &[u16]) -> Result<(), TestCaseError> {
    let v = error_body(r, allowed)?;
    let message = v["error"]["message"].as_str().unwrap_or_default();
    prop_assert!(!message.trim().is_empty(), "no error message in {}", v);
    prop_assert!(v["error"]["type"].is_string(), "no error type in {}", v);
    Ok(())
}

/// The JSON body of an error answer whose status is one of `allowed`.
fn error_body(r: &Reply, allowed: &[u16]) -> Result<Value, TestCaseError> {
    prop_assert!(
        allowed.contains(&r.status),
        "status {} not in {:?}; body {}",
        r.status,
        allowed,
        r.text()
    );
    serde_json::from_slice(&r.body)
        .map_err(|e| fail(format!("error body is not JSON ({e}): {}", r.text())))
}
