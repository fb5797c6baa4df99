//! Embedding benchmarks (BENCHMARKS.md, "Embeddings"): the in-process
//! baseline and the HTTP load generator that `benches/load/embed_*.sh`
//! run side by side.
//!
//! ```text
//! cargo bench --bench embed -- baseline --texts FILE [--model-dir DIR]
//!     [--batch 32] [--threads 2] [--secs 10] [--warmup 1]
//!     [--sort-window W] [--pad-multiple M]
//! cargo bench --bench embed -- load --url http://127.0.0.1:PORT --texts FILE
//!     [--model minilm] [--concurrency 32] [--requests N] [--no-cache]
//!     [--zipf S --distinct D --seed X] [--format base64|float] [--secs-cap 120]
//! ```
//!
//! `baseline`: what the server does per text on a miss, without HTTP, cache,
//! batcher or disk: the same tokenizer (padding off, truncation at 256
//! tokens, one `encode` per text), batches of `--batch` texts right-padded
//! with zeros to the batch's longest text, one `Backend::run` per batch with
//! `--threads` intra-op threads, mean pooling over the real tokens, L2
//! normalization. One thread, back to back, cycling through the texts in
//! file order. `--sort-window W`: length bucketing as a server with a
//! backlog of W queued texts could do it: each window of W texts (in file
//! order; 0: all texts) is sorted by token count before it is cut into
//! batches, and the batches are then run in a shuffled (fixed) order, so a
//! run of any length sees the whole length distribution. `--pad-multiple M`
//! pads each batch to its longest text rounded up to a multiple of M tokens
//! (fewer distinct input shapes, more padding). It reports real tokens/s
//! and the padding waste (padded / real tokens) of its own batches, and, by
//! simulation, of random batches of 1..64 texts.
//!
//! `load`: a minimal HTTP/1.1 keep-alive client on one thread (so it takes
//! at most one core from the server) with `--concurrency` connections,
//! each sending one text per `POST /v1/embeddings` request. Unique mode
//! (default): each of the first `--requests` texts once. Zipf mode
//! (`--zipf S`): `--requests` draws of rank k in 1..=D with P(k) ∝ 1/k^S
//! (a fixed seed, so every run sends the same sequence); rank k is text k.
//! `--no-cache` sends `Cache-Control: no-cache, no-store`. It counts the
//! `X-Cache` answers and the `usage.prompt_tokens` total.
//!
//! The last line of each mode is machine-readable (`RESULT k=v ...`).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use infercache::testing::{
    backend::{init_runtime, resolve_library, Backend, BackendOptions},
    tensor::{DataType, Tensor},
};
use tokenizers::{Tokenizer, TruncationParams};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

type Flags = HashMap<String, String>;

fn parse_flags(args: impl Iterator<Item = String>) -> Flags {
    let switches = ["--no-cache"];
    let mut flags = Flags::new();
    let mut it = args.filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        assert!(flag.starts_with("--"), "unexpected argument {flag}");
        if switches.contains(&flag.as_str()) {
            flags.insert(flag, "1".into());
        } else {
            let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
            flags.insert(flag, value);
        }
    }
    flags
}

fn get<T: std::str::FromStr>(flags: &Flags, name: &str, default: T) -> T {
    match flags.get(name) {
        None => default,
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value for {name}: {v}")),
    }
}

fn read_texts(flags: &Flags) -> Vec<String> {
    let path = flags.get("--texts").expect("--texts FILE is required");
    let texts: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!texts.is_empty(), "{path} has no texts");
    texts
}

fn main() {
    if std::env::args().len() == 1 {
        // `cargo test --all-targets` runs bench targets without arguments.
        eprintln!("a benchmark: see benches/load/embed_http.sh");
        return;
    }
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mode = args.next().unwrap_or_default();
    let flags = parse_flags(args);
    match mode.as_str() {
        "baseline" => baseline(&flags),
        "load" => load(&flags),
        _ => panic!("usage: embed baseline|load [flags] (see the file's doc comment)"),
    }
}

// ---------------------------------------------------------------------------
// baseline

struct Encoded {
    ids: Vec<u32>,
    mask: Vec<u32>,
    types: Vec<u32>,
}

fn baseline(flags: &Flags) {
    let texts = read_texts(flags);
    let dir = PathBuf::from(flags.get("--model-dir").cloned().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models/minilm").to_string()
    }));
    let batch: usize = get(flags, "--batch", 32);
    let threads: usize = get(flags, "--threads", 2);
    let secs: f64 = get(flags, "--secs", 10.0);
    let warmup: f64 = get(flags, "--warmup", 1.0);
    let max_tokens: usize = get(flags, "--max-tokens", 256);
    let sort_window: Option<usize> = flags
        .get("--sort-window")
        .map(|v| v.parse().expect("--sort-window W"));
    let pad_multiple: usize = get(flags, "--pad-multiple", 1).max(1);

    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .unwrap_or_else(|e| panic!("tokenizer: {e}"));
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            ..TruncationParams::default()
        }))
        .unwrap_or_else(|e| panic!("truncation: {e}"));
    init_runtime(&resolve_library(None)).unwrap_or_else(|e| panic!("{e}"));
    let backend = Backend::open(
        &dir.join("model.onnx"),
        &BackendOptions {
            intra_threads: threads,
            instances: 1,
            nice: 0,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let inputs: Vec<String> = backend.inputs().iter().map(|s| s.name.clone()).collect();

    let encode = |text: &str| -> Encoded {
        let e = tokenizer.encode(text, true).expect("tokenize");
        Encoded {
            ids: e.get_ids().to_vec(),
            mask: e.get_attention_mask().to_vec(),
            types: e.get_type_ids().to_vec(),
        }
    };
    // Token counts (outside the timed loop) for ordering and statistics.
    let lens: Vec<usize> = texts.iter().map(|t| encode(t).ids.len()).collect();
    let mut batches: Vec<Vec<usize>> = Vec::new();
    match sort_window {
        None => {
            let order: Vec<usize> = (0..texts.len()).collect();
            batches.extend(order.chunks(batch).map(<[usize]>::to_vec));
        }
        Some(w) => {
            let w = if w == 0 { texts.len() } else { w };
            let order: Vec<usize> = (0..texts.len()).collect();
            for window in order.chunks(w) {
                let mut window = window.to_vec();
                window.sort_by_key(|&i| lens[i]);
                batches.extend(window.chunks(batch).map(<[usize]>::to_vec));
            }
            // Fisher-Yates with a fixed seed.
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            for i in (1..batches.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                batches.swap(i, (seed % (i as u64 + 1)) as usize);
            }
        }
    }
    let real: usize = lens.iter().sum();
    println!(
        "# embed baseline: {} texts, {:.1} tokens/text (min {}, max {}), batch={batch} \
         threads={threads} secs={secs}{} ({} cores)",
        texts.len(),
        real as f64 / texts.len() as f64,
        lens.iter().min().unwrap(),
        lens.iter().max().unwrap(),
        match (sort_window, pad_multiple) {
            (None, 1) => String::new(),
            (w, m) => format!(
                "{}{}",
                w.map(|w| format!(" sort-window {w}")).unwrap_or_default(),
                if m > 1 {
                    format!(" pad-multiple {m}")
                } else {
                    String::new()
                }
            ),
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    print_padding_simulation(&lens, batch);

    let ints = |rows: &[Encoded], field: fn(&Encoded) -> &Vec<u32>, longest: usize| -> Bytes {
        let mut out = Vec::with_capacity(rows.len() * longest * 8);
        for r in rows {
            let v = field(r);
            out.extend(v.iter().flat_map(|x| i64::from(*x).to_le_bytes()));
            out.resize(out.len() + (longest - v.len()) * 8, 0);
        }
        Bytes::from(out)
    };
    let mut checksum = 0f32;
    let mut run_batch = |idx: &[usize]| -> (usize, usize) {
        let rows: Vec<Encoded> = idx.iter().map(|&i| encode(&texts[i])).collect();
        let longest = rows
            .iter()
            .map(|r| r.ids.len())
            .max()
            .unwrap()
            .next_multiple_of(pad_multiple);
        let tensors: Vec<Tensor> = inputs
            .iter()
            .map(|name| Tensor {
                name: name.clone(),
                datatype: DataType::Int64,
                shape: vec![rows.len() as u64, longest as u64],
                data: match name.as_str() {
                    "input_ids" => ints(&rows, |e| &e.ids, longest),
                    "attention_mask" => ints(&rows, |e| &e.mask, longest),
                    _ => ints(&rows, |e| &e.types, longest),
                },
            })
            .collect();
        let out = backend.run(&tensors).unwrap_or_else(|e| panic!("{e}"));
        let hidden = &out[0];
        assert_eq!(hidden.shape.len(), 3, "expected [batch, tokens, dim]");
        let dim = hidden.shape[2] as usize;
        let floats: Vec<f32> = hidden
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        for (i, r) in rows.iter().enumerate() {
            let len = r.ids.len();
            let base = i * longest * dim;
            let mut sum = vec![0f32; dim];
            for token in floats[base..base + len * dim].chunks_exact(dim) {
                sum.iter_mut().zip(token).for_each(|(s, v)| *s += v);
            }
            let mut vector: Vec<f32> = sum.iter().map(|s| s / len as f32).collect();
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            vector.iter_mut().for_each(|v| *v /= norm);
            checksum += vector[0];
        }
        (rows.iter().map(|r| r.ids.len()).sum(), rows.len() * longest)
    };

    let mut cursor = 0usize;
    let mut next_batch = || -> Vec<usize> {
        let b = batches[cursor % batches.len()].clone();
        cursor += 1;
        b
    };
    let warm_until = Instant::now() + Duration::from_secs_f64(warmup);
    while Instant::now() < warm_until {
        run_batch(&next_batch());
    }
    let (mut sentences, mut real_tokens, mut padded_tokens) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        let idx = next_batch();
        let (r, p) = run_batch(&idx);
        sentences += idx.len();
        real_tokens += r;
        padded_tokens += p;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_s = sentences as f64 / elapsed;
    let waste = padded_tokens as f64 / real_tokens as f64;
    println!(
        "{sentences} texts in {elapsed:.2}s: {per_s:.1} texts/s, {:.0} real tokens/s; \
         padded/real tokens {waste:.3} (checksum {checksum:.3})",
        real_tokens as f64 / elapsed
    );
    println!(
        "RESULT texts_per_s={per_s:.1} real_tokens_per_s={:.0} padded_over_real={waste:.3}",
        real_tokens as f64 / elapsed
    );
}

/// Expected padded/real tokens for batches of texts drawn uniformly at
/// random from `lens` (what a server batching in arrival order pads), for
/// several batch sizes, by simulation; and the same for sorted buckets.
fn print_padding_simulation(lens: &[usize], batch: usize) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut line = String::from("# padded/real tokens, random batches of");
    for b in [1usize, 4, 8, 16, 32, 64] {
        let (mut real, mut padded) = (0usize, 0usize);
        for _ in 0..20_000 / b {
            let picks: Vec<usize> = (0..b).map(|_| lens[rand(lens.len())]).collect();
            real += picks.iter().sum::<usize>();
            padded += b * picks.iter().max().unwrap();
        }
        line += &format!(" {b}: {:.3}", padded as f64 / real as f64);
    }
    let mut sorted = lens.to_vec();
    sorted.sort_unstable();
    let padded: usize = sorted
        .chunks(batch)
        .map(|c| c.len() * c.iter().max().unwrap())
        .sum();
    line += &format!(
        "; sorted buckets of {batch}: {:.3}",
        padded as f64 / sorted.iter().sum::<usize>() as f64
    );
    println!("{line}");
}

// ---------------------------------------------------------------------------
// load

#[derive(Default)]
struct Tally {
    hit: usize,
    miss: usize,
    coalesced: usize,
    other: usize,
    errors: usize,
    tokens: usize,
    latencies_us: Vec<u32>,
}

/// Rank k (0-based) drawn `n` times with P(k) ∝ 1/(k+1)^s, k < distinct.
fn zipf_sequence(n: usize, distinct: usize, s: f64, seed: u64) -> Vec<usize> {
    let weights: Vec<f64> = (1..=distinct).map(|k| (k as f64).powf(-s)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(distinct);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u).min(distinct - 1)
        })
        .collect()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn load(flags: &Flags) {
    let texts = read_texts(flags);
    let url = flags.get("--url").expect("--url http://127.0.0.1:PORT");
    let addr = url
        .strip_prefix("http://")
        .expect("--url must be http://HOST:PORT")
        .trim_end_matches('/')
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "only 127.0.0.1 is allowed, got {addr}"
    );
    let model = flags.get("--model").cloned().unwrap_or("minilm".into());
    let concurrency: usize = get(flags, "--concurrency", 32);
    let format = flags.get("--format").cloned().unwrap_or("base64".into());
    let no_cache = flags.contains_key("--no-cache");
    let cap = Duration::from_secs_f64(get(flags, "--secs-cap", 120.0));
    let zipf: Option<f64> = flags.get("--zipf").map(|v| v.parse().expect("--zipf S"));
    let sequence: Vec<usize> = match zipf {
        Some(s) => {
            let distinct: usize = get(flags, "--distinct", 2000);
            assert!(distinct <= texts.len(), "--distinct exceeds the texts");
            zipf_sequence(
                get(flags, "--requests", 10_000),
                distinct,
                s,
                get(flags, "--seed", 42),
            )
        }
        None => {
            let n: usize = get(flags, "--requests", texts.len());
            assert!(n <= texts.len(), "--requests exceeds the (unique) texts");
            (0..n).collect()
        }
    };
    let distinct_sent = {
        let mut v = sequence.clone();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let extra = if no_cache {
        "Cache-Control: no-cache, no-store\r\n"
    } else {
        ""
    };
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        sequence
            .iter()
            .map(|&k| {
                let body = format!(
                    "{{\"model\":{},\"input\":{},\"encoding_format\":\"{format}\"}}",
                    json_string(&model),
                    json_string(&texts[k])
                );
                format!(
                    "POST /v1/embeddings HTTP/1.1\r\nHost: {addr}\r\n\
                     Content-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
            .collect(),
    );
    println!(
        "# embed load: {} requests ({distinct_sent} distinct texts{}) at {concurrency} \
         connections to {addr}, model {model}, encoding_format {format}{}",
        requests.len(),
        zipf.map(|s| format!(", zipf s={s}")).unwrap_or_default(),
        if no_cache {
            ", Cache-Control: no-cache, no-store"
        } else {
            ""
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tally, elapsed) = rt.block_on(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (requests, next, addr) = (requests.clone(), next.clone(), addr.clone());
                tokio::spawn(async move { client(&addr, &requests, &next, started + cap).await })
            })
            .collect();
        let mut total = Tally::default();
        for t in tasks {
            let t = t.await.expect("a client task panicked");
            total.hit += t.hit;
            total.miss += t.miss;
            total.coalesced += t.coalesced;
            total.other += t.other;
            total.errors += t.errors;
            total.tokens += t.tokens;
            total.latencies_us.extend(t.latencies_us);
        }
        (total, started.elapsed().as_secs_f64())
    });
    let mut lat = tally.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0
    };
    let done = lat.len();
    let per_s = done as f64 / elapsed;
    let hit_rate = tally.hit as f64 / done.max(1) as f64;
    println!(
        "{done} answers in {elapsed:.2}s: {per_s:.1} req/s (= texts/s); X-Cache hit {} \
         coalesced {} miss {} other {}; errors {}; p50 {:.2} ms p99 {:.2} ms; \
         {} prompt tokens",
        tally.hit,
        tally.coalesced,
        tally.miss,
        tally.other,
        tally.errors,
        pct(0.50),
        pct(0.99),
        tally.tokens
    );
    println!(
        "RESULT requests={done} secs={elapsed:.3} texts_per_s={per_s:.1} hit={} coalesced={} \
         miss={} errors={} hit_rate={hit_rate:.4} p50_ms={:.2} p99_ms={:.2} tokens={} distinct={distinct_sent}",
        tally.hit,
        tally.coalesced,
        tally.miss,
        tally.errors,
        pct(0.50),
        pct(0.99),
        tally.tokens
    );
}

/// One keep-alive connection taking requests from the shared cursor until
/// they run out or `deadline` passes.
async fn client(addr: &str, requests: &[Vec<u8>], next: &AtomicUsize, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<BufReader<tokio::net::TcpStream>> = None;
    loop {
        if Instant::now() > deadline {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(request) = requests.get(i) else {
            break;
        };
        if conn.is_none() {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true).ok();
                    conn = Some(BufReader::with_capacity(64 * 1024, s));
                }
                Err(e) => {
                    eprintln!("connect: {e}");
                    tally.errors += 1;
                    continue;
                }
            }
        }
        let stream = conn.as_mut().unwrap();
        let sent = Instant::now();
        match exchange(stream, request).await {
            Ok((status, cache, body)) => {
                tally.latencies_us.push(sent.elapsed().as_micros() as u32);
                if status != 200 {
                    tally.errors += 1;
                    if tally.errors <= 3 {
                        eprintln!("status {status}: {}", String::from_utf8_lossy(&body));
                    }
                    continue;
                }
                match cache.as_deref() {
                    Some("hit") => tally.hit += 1,
                    Some("miss") => tally.miss += 1,
                    Some("coalesced") => tally.coalesced += 1,
                    _ => tally.other += 1,
                }
                tally.tokens += prompt_tokens(&body).unwrap_or(0);
            }
            Err(e) => {
                eprintln!("request failed: {e}");
                tally.errors += 1;
                conn = None;
            }
        }
    }
    tally
}

async fn exchange(
    stream: &mut BufReader<tokio::net::TcpStream>,
    request: &[u8],
) -> std::io::Result<(u16, Option<String>, Vec<u8>)> {
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut cache) = (None, None);
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("connection closed in headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("x-cache") {
                cache = Some(value.to_string());
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("no Content-Length"))?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok((status, cache, body))
}

fn prompt_tokens(body: &[u8]) -> Option<usize> {
    let key = b"\"prompt_tokens\":";
    let at = body.windows(key.len()).rposition(|w| w == key)? + key.len();
    let digits: String = body[at..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}
