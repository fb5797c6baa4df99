//! One validated [`Config`], built in one place from the TOML file, the
//! `INFERCACHE_*` environment and the command-line flags.
//!
//! Precedence: flag > environment > file > embedded default (clap merges
//! flags with their environment variables; the file fills what both left
//! out). Every problem is reported as one line naming the key, so an
//! operator knows what to fix without reading a backtrace.

mod model;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use bytesize::ByteSize;
use serde::Deserialize;

pub use model::{ModelConfig, Pooling};

/// Flags of `infercache serve`; every top-level setting also has an
/// `INFERCACHE_*` variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (see README: Configuration).
    #[arg(long, env = "INFERCACHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// `HOST:PORT` or `unix:/path/to.sock` [default: 127.0.0.1:7600]
    #[arg(long, env = "INFERCACHE_LISTEN")]
    pub listen: Option<String>,
    /// Directory of the disk tier [default: ./infercache-data]
    #[arg(long, env = "INFERCACHE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Memory tier size, e.g. 256MiB [default: 256MiB]
    #[arg(long, env = "INFERCACHE_MEMORY_CAPACITY")]
    pub memory_capacity: Option<ByteSize>,
    /// Disk tier size, e.g. 4GiB [default: 4GiB]
    #[arg(long, env = "INFERCACHE_DISK_CAPACITY")]
    pub disk_capacity: Option<ByteSize>,
    /// Largest value accepted [default: 16MiB]
    #[arg(long, env = "INFERCACHE_MAX_VALUE_SIZE")]
    pub max_value_size: Option<ByteSize>,
    /// Size of the VRAM-budget semaphore in units [default: 16]
    #[arg(long, env = "INFERCACHE_VRAM_UNITS")]
    pub vram_units: Option<u32>,
    /// Bearer token required on every endpoint but health checks.
    #[arg(long, env = "INFERCACHE_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Bound of the disk writer's queue, in writes [default: 4096]
    #[arg(long, env = "INFERCACHE_WRITE_QUEUE")]
    pub write_queue: Option<usize>,
    /// Most writes committed in one transaction [default: 1024]
    #[arg(long, env = "INFERCACHE_WRITE_BATCH")]
    pub write_batch: Option<usize>,
    /// How long a commit waits for more writes, e.g. 1ms [default: 0ms]
    #[arg(long, env = "INFERCACHE_WRITE_DELAY")]
    pub write_delay: Option<humantime::Duration>,
    /// How often expired disk entries are swept, e.g. 30s [default: 30s]
    #[arg(long, env = "INFERCACHE_SWEEP_INTERVAL")]
    pub sweep_interval: Option<humantime::Duration>,
    /// ONNX Runtime shared library [default: $ORT_DYLIB_PATH, else
    /// assets/onnxruntime/libonnxruntime.so]
    #[arg(long, env = "INFERCACHE_ONNXRUNTIME")]
    pub onnxruntime: Option<PathBuf>,
    /// How long one request may wait for a result, e.g. 30s [default: 30s]
    #[arg(long, env = "INFERCACHE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<humantime::Duration>,
    /// Largest inference request body [default: 64MiB]
    #[arg(long, env = "INFERCACHE_MAX_REQUEST_SIZE")]
    pub max_request_size: Option<ByteSize>,
    /// Most client connections at once; more wait to be accepted [default: 1024]
    #[arg(long, env = "INFERCACHE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's head, e.g. 10s [default: 10s]
    #[arg(long, env = "INFERCACHE_HEADER_TIMEOUT")]
    pub header_timeout: Option<humantime::Duration>,
    /// Longest wait for the next piece of a request body, e.g. 30s [default: 30s]
    #[arg(long, env = "INFERCACHE_BODY_TIMEOUT")]
    pub body_timeout: Option<humantime::Duration>,
    /// Log lines: `text` (human-readable) or `json` (one object per line)
    /// [default: text]. A flag or variable only: logging starts before the
    /// config file is read.
    #[arg(long, env = "INFERCACHE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve a model: NAME=PATH (repeatable; other settings at defaults).
    #[arg(long = "model", value_name = "NAME=PATH", value_parser = model::parse_model_flag)]
    pub models: Vec<ModelConfig>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The config file's schema. Unknown keys are errors, so a typo is caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    memory_capacity: Option<ByteSize>,
    disk_capacity: Option<ByteSize>,
    max_value_size: Option<ByteSize>,
    vram_units: Option<u32>,
    auth_token: Option<String>,
    write_queue: Option<usize>,
    write_batch: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    write_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    sweep_interval: Option<Duration>,
    onnxruntime: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    max_request_size: Option<ByteSize>,
    max_connections: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    body_timeout: Option<Duration>,
    #[serde(default)]
    model: Vec<ModelConfig>,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "{addr}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The validated configuration, passed whole to the server and the store.
#[derive(Clone)]
pub struct Config {
    pub listen: Listen,
    pub data_dir: PathBuf,
    pub memory_capacity: u64,
    pub disk_capacity: u64,
    pub max_value_size: u64,
    pub vram_units: u32,
    pub auth_token: Option<String>,
    pub write_queue: usize,
    pub write_batch: usize,
    pub write_delay: Duration,
    pub sweep_interval: Duration,
    /// Explicit ONNX Runtime library, if any (else the usual search).
    pub onnxruntime: Option<PathBuf>,
    pub request_timeout: Duration,
    pub max_request_size: u64,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub models: Vec<ModelConfig>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("memory_capacity", &ByteSize(self.memory_capacity))
            .field("disk_capacity", &ByteSize(self.disk_capacity))
            .field("max_value_size", &ByteSize(self.max_value_size))
            .field("vram_units", &self.vram_units)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("write_queue", &self.write_queue)
            .field("write_batch", &self.write_batch)
            .field("write_delay", &self.write_delay)
            .field("sweep_interval", &self.sweep_interval)
            .field("onnxruntime", &self.onnxruntime)
            .field("request_timeout", &self.request_timeout)
            .field("max_request_size", &ByteSize(self.max_request_size))
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("models", &self.models)
            .finish()
    }
}

/// The live configuration: handlers and batchers read the latest value on
/// each use, so a reload takes effect without dropping a request.
pub type Live = tokio::sync::watch::Receiver<std::sync::Arc<Config>>;

/// A fixed live configuration (no reloads), e.g. for tests and libraries.
pub fn fixed(config: Config) -> Live {
    tokio::sync::watch::channel(std::sync::Arc::new(config)).1
}

/// A configuration problem: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid config: {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: one_line(key),
        problem: one_line(&problem.into()),
    }
}

/// Escape line breaks and other control characters that user text (keys,
/// paths, values) may carry, so an error stays one line and cannot drive
/// the terminal.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl Default for Config {
    /// The embedded default of `infercache serve` with no arguments.
    fn default() -> Self {
        Config::from_args(&ServeArgs::default()).expect("the embedded default is valid")
    }
}

impl Config {
    /// Build the config from flags/environment and the file they name.
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // Model paths in a file are relative to the file.
        let base = args.config.as_deref().and_then(Path::parent);
        for model in &mut file.model {
            if let Some(base) = base {
                for path in std::iter::once(&mut model.path).chain(model.tokenizer.as_mut()) {
                    if path.is_relative() {
                        *path = base.join(&*path);
                    }
                }
            }
        }
        let listen = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7600".into());
        let config = Config {
            listen: parse_listen(&listen)?,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| "./infercache-data".into()),
            memory_capacity: pick(args.memory_capacity, file.memory_capacity, "256MiB"),
            disk_capacity: pick(args.disk_capacity, file.disk_capacity, "4GiB"),
            max_value_size: 0,
            vram_units: args.vram_units.or(file.vram_units).unwrap_or(16),
            auth_token: args.auth_token.clone().or(file.auth_token),
            write_queue: args.write_queue.or(file.write_queue).unwrap_or(4096),
            write_batch: args.write_batch.or(file.write_batch).unwrap_or(1024),
            write_delay: args
                .write_delay
                .map(Into::into)
                .or(file.write_delay)
                .unwrap_or(Duration::ZERO),
            sweep_interval: args
                .sweep_interval
                .map(Into::into)
                .or(file.sweep_interval)
                .unwrap_or(Duration::from_secs(30)),
            onnxruntime: args.onnxruntime.clone().or(file.onnxruntime),
            request_timeout: args
                .request_timeout
                .map(Into::into)
                .or(file.request_timeout)
                .unwrap_or(Duration::from_secs(30)),
            max_request_size: pick(args.max_request_size, file.max_request_size, "64MiB"),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(1024),
            header_timeout: args
                .header_timeout
                .map(Into::into)
                .or(file.header_timeout)
                .unwrap_or(Duration::from_secs(10)),
            body_timeout: args
                .body_timeout
                .map(Into::into)
                .or(file.body_timeout)
                .unwrap_or(Duration::from_secs(30)),
            models: file.model.into_iter().chain(args.models.clone()).collect(),
        };
        // The default value limit shrinks with a small disk tier; an
        // explicit one larger than the disk tier is an error.
        let max_value_size = args.max_value_size.or(file.max_value_size);
        let config = Config {
            max_value_size: max_value_size
                .map_or(default_max_value_size(config.disk_capacity), |size| {
                    size.as_u64()
                }),
            ..config
        };
        config.validate()?;
        Ok(config)
    }

    /// The settings of the model called `name`.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Re-read the configuration for a live reload (SIGHUP). Settings that
    /// cannot change in a running server keep their current values and are
    /// named in the returned list: listen, data_dir, the tier capacities,
    /// the VRAM budget, the runtime library, connection settings, the set of
    /// models and each model's file, tokenizer, threads, instances and
    /// costs. Everything else (auth token, size limits, timeouts, TTLs,
    /// batch sizes and deadlines, queue lengths) takes effect.
    pub fn reloaded(&self, args: &ServeArgs) -> Result<(Config, Vec<String>), ConfigError> {
        let mut next = Config::from_args(args)?;
        let mut kept = Vec::new();
        macro_rules! keep {
            ($($field:ident),*) => {$(
                if next.$field != self.$field {
                    kept.push(stringify!($field).to_string());
                    next.$field = self.$field.clone();
                }
            )*};
        }
        keep!(
            listen,
            data_dir,
            memory_capacity,
            disk_capacity,
            vram_units,
            onnxruntime,
            max_connections,
            header_timeout,
            body_timeout,
            write_queue,
            write_batch,
            write_delay,
            sweep_interval
        );
        let mut models = Vec::with_capacity(self.models.len());
        for old in &self.models {
            let Some(new) = next.model(&old.name) else {
                kept.push(format!("model `{}` (removed)", old.name));
                models.push(old.clone());
                continue;
            };
            let live = ModelConfig {
                max_batch: new.max_batch,
                max_delay_ms: new.max_delay_ms,
                queue: new.queue,
                ttl: new.ttl,
                max_batch_tokens: new.max_batch_tokens,
                max_inputs: new.max_inputs,
                ..old.clone()
            };
            if live != *new {
                kept.push(format!(
                    "model `{}` (file, tokenizer, threads, instances, costs)",
                    old.name
                ));
            }
            models.push(live);
        }
        for new in &next.models {
            if self.model(&new.name).is_none() {
                kept.push(format!("model `{}` (added)", new.name));
            }
        }
        next.models = models;
        next.validate()?;
        Ok((next, kept))
    }

    /// The part of the config the two-tier store needs.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            dir: self.data_dir.clone(),
            memory_capacity: self.memory_capacity,
            disk_capacity: self.disk_capacity,
            max_value_size: self.max_value_size,
            write_queue: self.write_queue,
            write_batch: self.write_batch,
            write_delay: self.write_delay,
            sweep_interval: self.sweep_interval,
            disk_full: None,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_capacity == 0 {
            return Err(invalid("memory_capacity", "must be greater than 0"));
        }
        if self.disk_capacity == 0 {
            return Err(invalid("disk_capacity", "must be greater than 0"));
        }
        let reserve = crate::store::disk::ENTRY_RESERVE;
        if self.disk_capacity <= reserve {
            return Err(invalid(
                "disk_capacity",
                format!("must be more than {}", ByteSize(reserve)),
            ));
        }
        if self.max_value_size == 0 || self.max_value_size > self.disk_capacity - reserve {
            return Err(invalid(
                "max_value_size",
                format!(
                    "must be between 1 byte and disk_capacity ({}) minus {} of per-entry \
                     overhead; raise disk_capacity or lower max_value_size",
                    ByteSize(self.disk_capacity),
                    ByteSize(reserve)
                ),
            ));
        }
        if self.max_value_size > u64::from(u32::MAX / 2) {
            return Err(invalid("max_value_size", "must be at most 2GiB"));
        }
        if self.vram_units == 0 {
            return Err(invalid("vram_units", "must be at least 1"));
        }
        if self.write_queue == 0 {
            return Err(invalid("write_queue", "must be at least 1"));
        }
        if self.write_batch == 0 {
            return Err(invalid("write_batch", "must be at least 1"));
        }
        if self.sweep_interval.is_zero() {
            return Err(invalid("sweep_interval", "must be greater than 0"));
        }
        if matches!(&self.auth_token, Some(t) if t.trim().is_empty()) {
            return Err(invalid("auth_token", "must not be empty when set"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be greater than 0"));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            return Err(invalid(
                "header_timeout/body_timeout",
                "must be greater than 0",
            ));
        }
        if self.max_request_size == 0 {
            return Err(invalid("max_request_size", "must be greater than 0"));
        }
        let mut names = std::collections::HashSet::new();
        for model in &self.models {
            model.validate(self.vram_units)?;
            if !names.insert(model.name.as_str()) {
                return Err(invalid(
                    "model.name",
                    format!("`{}` is declared twice", model.name),
                ));
            }
        }
        Ok(())
    }
}

/// The value limit when none is set: 16 MiB, less on a small disk tier.
fn default_max_value_size(disk_capacity: u64) -> u64 {
    disk_capacity
        .saturating_sub(crate::store::disk::ENTRY_RESERVE)
        .clamp(1, 16 << 20)
}

fn pick(flag: Option<ByteSize>, file: Option<ByteSize>, default: &str) -> u64 {
    flag.or(file)
        .unwrap_or_else(|| default.parse().expect("valid default size"))
        .as_u64()
}

fn parse_listen(s: &str) -> Result<Listen, ConfigError> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(invalid("listen", "unix: needs a socket path"));
        }
        return Ok(Listen::Unix(path.into()));
    }
    s.parse().map(Listen::Tcp).map_err(|_| {
        invalid(
            "listen",
            format!("`{s}` is neither HOST:PORT (e.g. 127.0.0.1:7600) nor unix:/path"),
        )
    })
}

fn read_file(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => locate(&text, span.start),
            None => (0, String::new()),
        };
        let key = if key.is_empty() { "config".into() } else { key };
        invalid(
            &key,
            format!("{} (in {} line {line})", e.message().trim(), path.display()),
        )
    })
}

/// Line number (1-based) of `offset` and the key written on that line.
fn locate(text: &str, offset: usize) -> (usize, String) {
    let before = &text[..offset.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .unwrap_or_default();
    (line_no, key)
}

#[cfg(test)]
mod tests;
