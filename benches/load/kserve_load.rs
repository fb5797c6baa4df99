//! Load generator of benches/load/grpc_uncached.sh: KServe v2 infer
//! requests for a text model (minilm's `input_ids`, `attention_mask`,
//! `token_type_ids`, INT64 `[ROWS, TOKENS]`), every row new, over gRPC
//! (`ModelInfer`, `raw_input_contents`) or binary REST (Triton's binary
//! tensor extension, `/v2/models/MODEL/infer`).
//!
//! Both protocols go through the same client: tonic's HTTP/2 channel with
//! prior knowledge, CONNS connections, CONCURRENCY requests in flight. So
//! the two runs differ only in what infercache decodes and encodes. h2load
//! cannot send a different body per request, hence this program.
//!
//! Rows are unique within a run and across runs with different `--start`:
//! the row number's base-20000 digits are the first token ids. Every
//! answer must be OK with `x-cache: miss`; the run fails otherwise.
//!
//! Prints `RESULT requests=N rows_per_s=R req_per_s=Q mean_ms=M p99_ms=P`.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use http_body_util::BodyExt;
use infercache::grpc::proto::{
    grpc_inference_service_client::GrpcInferenceServiceClient,
    model_infer_request::InferInputTensor, ModelInferRequest,
};
use tonic::{
    codegen::http,
    transport::{Channel, Endpoint},
};
use tower::{Service, ServiceExt};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Protocol {
    Grpc,
    Rest,
}

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long, default_value = "minilm")]
    model: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// Requests in flight, spread over the connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Tokens per row (with [CLS] and [SEP]).
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// First row number; give each run its own range.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Client runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

const INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

/// The three INT64 tensors of `rows` new rows, little-endian.
fn tensors(first: u64, rows: usize, tokens: usize) -> [Bytes; 3] {
    let mut ids = BytesMut::with_capacity(rows * tokens * 8);
    for row in first..first + rows as u64 {
        let mut n = row;
        for t in 0..tokens {
            let id = match t {
                0 => 101,
                _ if t == tokens - 1 => 102,
                _ => {
                    let digit = n % 20000;
                    n /= 20000;
                    1000 + digit as i64
                }
            };
            ids.put_i64_le(id);
        }
    }
    let same = |v: i64| Bytes::from(v.to_le_bytes().repeat(rows * tokens));
    [ids.freeze(), same(1), same(0)]
}

struct Client {
    protocol: Protocol,
    model: String,
    rows: usize,
    tokens: usize,
    grpc: GrpcInferenceServiceClient<Channel>,
    channel: Channel,
    /// Binary REST: the JSON header, the same for every request.
    rest_header: Bytes,
}

impl Client {
    fn new(args: &Args, channel: Channel) -> Client {
        let size = args.rows * args.tokens * 8;
        let inputs: Vec<_> = INPUTS
            .iter()
            .map(|name| {
                serde_json::json!({
                    "name": name, "shape": [args.rows, args.tokens], "datatype": "INT64",
                    "parameters": {"binary_data_size": size},
                })
            })
            .collect();
        let header = serde_json::json!({
            "inputs": inputs,
            "outputs": [{"name": "last_hidden_state", "parameters": {"binary_data": true}}],
        });
        Client {
            protocol: args.protocol,
            model: args.model.clone(),
            rows: args.rows,
            tokens: args.tokens,
            grpc: GrpcInferenceServiceClient::new(channel.clone())
                .max_decoding_message_size(usize::MAX),
            channel,
            rest_header: Bytes::from(header.to_string()),
        }
    }

    /// One request; its `x-cache`.
    async fn infer(&mut self, first: u64) -> Result<String, String> {
        let raw = tensors(first, self.rows, self.tokens);
        let shape = vec![self.rows as i64, self.tokens as i64];
        match self.protocol {
            Protocol::Grpc => {
                let request = ModelInferRequest {
                    model_name: self.model.clone(),
                    inputs: INPUTS
                        .iter()
                        .map(|name| InferInputTensor {
                            name: name.to_string(),
                            datatype: "INT64".into(),
                            shape: shape.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    raw_input_contents: raw.to_vec(),
                    ..Default::default()
                };
                let response = self
                    .grpc
                    .model_infer(request)
                    .await
                    .map_err(|e| e.to_string())?;
                if response.get_ref().raw_output_contents.is_empty() {
                    return Err("no raw output".into());
                }
                let cache = response.metadata().get("x-cache");
                x_cache(cache.and_then(|v| v.to_str().ok()))
            }
            Protocol::Rest => {
                let mut body = BytesMut::from(&self.rest_header[..]);
                for tensor in &raw {
                    body.put_slice(tensor);
                }
                let request = http::Request::post(format!("/v2/models/{}/infer", self.model))
                    .header("content-type", "application/octet-stream")
                    .header("inference-header-content-length", self.rest_header.len())
                    .body(tonic::body::Body::new(http_body_util::Full::new(
                        body.freeze(),
                    )))
                    .map_err(|e| e.to_string())?;
                let channel = self.channel.ready().await.map_err(|e| e.to_string())?;
                let response = channel.call(request).await.map_err(|e| e.to_string())?;
                let (head, body) = response.into_parts();
                let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
                if head.status != 200 {
                    return Err(format!(
                        "{}: {}",
                        head.status,
                        String::from_utf8_lossy(&body)
                    ));
                }
                x_cache(head.headers.get("x-cache").and_then(|v| v.to_str().ok()))
            }
        }
    }
}

fn x_cache(value: Option<&str>) -> Result<String, String> {
    value.map(str::to_string).ok_or_else(|| "no x-cache".into())
}

async fn run(args: Args) -> Result<(), String> {
    let mut channels = Vec::new();
    for _ in 0..args.conns {
        let endpoint = Endpoint::from_shared(args.url.clone()).map_err(|e| e.to_string())?;
        channels.push(endpoint.connect().await.map_err(|e| e.to_string())?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(args.secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let mut client = Client::new(&args, channels[i % channels.len()].clone());
            let (next, rows, start) = (next.clone(), args.rows as u64, args.start);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let first = start + next.fetch_add(rows, Ordering::Relaxed);
                    let t = Instant::now();
                    let cache = client.infer(first).await?;
                    if cache != "miss" {
                        return Err(format!("row {first}: x-cache {cache}, want miss"));
                    }
                    latencies.push(t.elapsed());
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let n = latencies.len();
    let mean = latencies.iter().sum::<Duration>().as_secs_f64() * 1e3 / n.max(1) as f64;
    let p99 = latencies
        .get((n * 99 / 100).min(n.saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "RESULT requests={n} rows_per_s={:.1} req_per_s={:.1} mean_ms={mean:.3} p99_ms={p99:.3}",
        (n * args.rows) as f64 / elapsed,
        n as f64 / elapsed,
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("kserve_load: {e}");
        std::process::exit(1);
    }
}
