//! `infercache warm FILE`: fill a running server's cache by replaying a
//! JSONL file of requests, with bounded concurrency (`buffer_unordered`), a
//! progress bar and a summary.
//!
//! One request per line, one of:
//! ```text
//! {"kv": {"key": "k", "value": "text", "content_type": "text/plain", "ttl": 60}}
//! {"infer": {"model": "mlp", "request": {"inputs": [...]}}}
//! {"embeddings": {"model": "minilm", "input": ["a", "b"]}}
//! ```
//! The file is read as it goes, so its size does not matter (the progress
//! bar counts bytes, so it works on a pipe too). A line that cannot be
//! parsed or sent counts as failed; the rest go on. `--server` takes an
//! HTTP base URL or `unix:/path/to/socket`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// Flags of `infercache warm`.
#[derive(Debug, Clone, clap::Args)]
pub struct WarmArgs {
    /// JSONL file of requests (see `infercache warm --help`).
    pub file: PathBuf,
    /// The server to warm: `http://host:port` or `unix:/path/to/socket`.
    #[arg(long, default_value = "http://127.0.0.1:7600")]
    pub server: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Bearer token, if the server requires one.
    #[arg(long, env = "INFERCACHE_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Kv {
        key: String,
        value: String,
        content_type: Option<String>,
        ttl: Option<u64>,
    },
    Infer {
        model: String,
        request: Value,
    },
    Embeddings(Value),
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub done: u64,
    pub failed: u64,
    /// Requests the server already had cached (`X-Cache: hit`).
    pub hits: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "done {}, failed {}, hits {}, time {:.2}s",
            self.done,
            self.failed,
            self.hits,
            self.elapsed.as_secs_f64()
        )
    }
}

enum Outcome {
    Ok { hit: bool },
    Failed(String),
}

/// Replay `args.file` against `args.server`.
pub async fn run(args: WarmArgs) -> std::io::Result<Summary> {
    let file = tokio::fs::File::open(&args.file).await?;
    let size = file.metadata().await?.len();
    let bar = if size > 0 {
        ProgressBar::new(size)
    } else {
        ProgressBar::no_length()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (client, base) = connect(&args.server).map_err(std::io::Error::other)?;
    let token = args.auth_token.clone();
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut results = lines(file)
        .map(|(n, bytes, line)| {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            async move {
                let outcome = send(&client, &base, token.as_deref(), line).await;
                (n, bytes, outcome)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .boxed();
    while let Some((n, bytes, outcome)) = results.next().await {
        match outcome {
            Outcome::Ok { hit } => {
                summary.done += 1;
                summary.hits += u64::from(hit);
            }
            Outcome::Failed(why) => {
                summary.failed += 1;
                bar.suspend(|| eprintln!("line {n}: {why}"));
            }
        }
        bar.inc(bytes);
    }
    bar.finish_and_clear();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A client and base URL for `server`: an HTTP base URL, or
/// `unix:/path` for a server on a Unix socket.
fn connect(server: &str) -> Result<(reqwest::Client, String), String> {
    let client = match server.strip_prefix("unix:") {
        Some(path) => reqwest::Client::builder().unix_socket(path),
        None => reqwest::Client::builder(),
    }
    .build()
    .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let base = match server.strip_prefix("unix:") {
        Some(_) => "http://localhost".to_string(),
        None => server.trim_end_matches('/').to_string(),
    };
    Ok((client, base))
}

/// The file's non-blank lines as they are read: (line number, bytes taken
/// from the file, the line).
fn lines(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = (usize, u64, std::io::Result<String>)> {
    let lines = tokio::io::BufReader::new(file).lines();
    // A read error ends the stream: the reader's position is unknown then.
    futures::stream::unfold(Some(lines), |lines| async move {
        let mut lines = lines?;
        match lines.next_line().await {
            Ok(Some(line)) => {
                let bytes = line.len() as u64 + 1;
                Some(((bytes, Ok(line)), Some(lines)))
            }
            Ok(None) => None,
            Err(e) => Some(((0, Err(e)), None)),
        }
    })
    .enumerate()
    .filter_map(|(n, (bytes, line))| async move {
        match line {
            Ok(l) if l.trim().is_empty() => None,
            line => Some((n + 1, bytes, line)),
        }
    })
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    line: std::io::Result<String>,
) -> Outcome {
    let line = match line {
        Ok(line) => line,
        Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
    };
    let request = match serde_json::from_str::<Line>(&line) {
        Err(e) => return Outcome::Failed(format!("not a warm request: {e}")),
        Ok(Line::Kv {
            key,
            value,
            content_type,
            ttl,
        }) => {
            let mut url = format!(
                "{base}/v1/kv/{}",
                utf8_percent_encode(&key, NON_ALPHANUMERIC)
            );
            if let Some(ttl) = ttl {
                url.push_str(&format!("?ttl={ttl}"));
            }
            let mut r = client.put(url).body(value);
            if let Some(ct) = content_type {
                r = r.header("content-type", ct);
            }
            r
        }
        Ok(Line::Infer { model, request }) => client
            .post(format!(
                "{base}/v2/models/{}/infer",
                utf8_percent_encode(&model, NON_ALPHANUMERIC)
            ))
            .json(&request),
        Ok(Line::Embeddings(body)) => client.post(format!("{base}/v1/embeddings")).json(&body),
    };
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    match request.send().await {
        Ok(resp) if resp.status().is_success() => Outcome::Ok {
            hit: resp.headers().get("x-cache").is_some_and(|v| v == "hit"),
        },
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Outcome::Failed(format!("{status}: {}", body.trim()))
        }
        Err(e) => Outcome::Failed(format!("request failed: {e}")),
    }
}
