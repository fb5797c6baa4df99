//! In-process baseline for the uncached inference benchmark (BENCHMARKS.md,
//! "Inference"): how many rows per second `Backend::run` does on one model
//! with no HTTP, no batcher, no cache, no disk. `benches/load/infer_mlp.sh`
//! runs it side by side with the server under wrk and reports the ratio.
//!
//! The model must have one FP32 input `[batch, d]` (like
//! `fixtures/models/mlp.onnx`, `x` [batch,16] -> `y` [batch,4]). Each of
//! `--instances` threads runs batches of `--batch` rows back to back on
//! its own session (the server's `instances` setting), cycling through 64
//! pre-built batches of random rows; `--threads` is ONNX Runtime's
//! intra-op thread count per session (the server's `threads`). The timed
//! loop includes exactly what the server's batcher pays per run inside
//! `Backend::run`: input conversion to ort values, the run, the output copy.
//!
//! ```text
//! cargo bench --bench infer -- [--model PATH] [--batch 32] [--threads 1]
//!     [--instances 1] [--secs 10] [--warmup 1]
//! ```
//!
//! The last line is machine-readable:
//! `RESULT rows_per_s=... runs_per_s=... us_per_run=...`.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use infercache::testing::{
    backend::{init_runtime, resolve_library, Backend, BackendOptions},
    tensor::{DataType, Tensor},
};

struct Args {
    model: PathBuf,
    batch: usize,
    threads: usize,
    instances: usize,
    secs: f64,
    warmup: f64,
}

fn parse_args() -> Args {
    let mut args = Args {
        model: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/models/mlp.onnx"
        )),
        batch: 32,
        threads: 1,
        instances: 1,
        secs: 10.0,
        warmup: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to every bench binary.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = PathBuf::from(&value),
            "--batch" => args.batch = num(&flag, &value),
            "--threads" => args.threads = num(&flag, &value),
            "--instances" => args.instances = num(&flag, &value),
            "--secs" => args.secs = num(&flag, &value),
            "--warmup" => args.warmup = num(&flag, &value),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

fn num<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad value for {flag}: {value}"))
}

/// xorshift64*: deterministic, dependency-free random rows.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Uniform in [-1, 1).
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn main() {
    if std::env::args().len() == 1 {
        // `cargo test --all-targets` runs bench targets without arguments.
        eprintln!("a benchmark: see benches/load/infer_mlp.sh");
        return;
    }
    let args = parse_args();
    let library = resolve_library(None);
    init_runtime(&library).unwrap_or_else(|e| panic!("{e}"));
    let backend = Arc::new(
        Backend::open(
            &args.model,
            &BackendOptions {
                intra_threads: args.threads,
                instances: args.instances,
                nice: 0,
            },
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let [input] = backend.inputs() else {
        panic!("the model must have exactly one input");
    };
    assert!(
        input.datatype == DataType::Fp32 && input.shape.len() == 2 && input.shape[1] > 0,
        "the input must be FP32 [batch, d], got {:?}",
        input
    );
    let width = input.shape[1] as usize;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let batches: Arc<Vec<Vec<Tensor>>> = Arc::new(
        (0..64)
            .map(|_| {
                let data: Vec<u8> = (0..args.batch * width)
                    .flat_map(|_| rng.next_f32().to_le_bytes())
                    .collect();
                vec![Tensor {
                    name: input.name.clone(),
                    datatype: DataType::Fp32,
                    shape: vec![args.batch as u64, width as u64],
                    data: Bytes::from(data),
                }]
            })
            .collect(),
    );

    println!(
        "# infer baseline: {} batch={} threads={} instances={} secs={} ({} cores)",
        args.model.display(),
        args.batch,
        args.threads,
        args.instances,
        args.secs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let runs = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..args.instances.max(1))
        .map(|w| {
            let (backend, batches, runs, stop) =
                (backend.clone(), batches.clone(), runs.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = w * 7;
                while !stop.load(Ordering::Relaxed) {
                    let out = backend
                        .run(&batches[i % batches.len()])
                        .unwrap_or_else(|e| panic!("{e}"));
                    std::hint::black_box(out);
                    runs.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    let (start_runs, started) = (runs.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    let (end_runs, elapsed) = (runs.load(Ordering::Relaxed), started.elapsed());
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let done = end_runs - start_runs;
    let secs = elapsed.as_secs_f64();
    let rows_per_s = (done * args.batch as u64) as f64 / secs;
    let runs_per_s = done as f64 / secs;
    let us_per_run = 1e6 * secs * args.instances.max(1) as f64 / done.max(1) as f64;
    println!(
        "{done} runs of {} rows in {secs:.2}s: {rows_per_s:.0} rows/s, {runs_per_s:.0} runs/s, \
         {us_per_run:.1} us per run per instance",
        args.batch
    );
    println!(
        "RESULT rows_per_s={rows_per_s:.0} runs_per_s={runs_per_s:.0} us_per_run={us_per_run:.1}"
    );
}
