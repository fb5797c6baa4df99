//! One validated [`Config`], built in one place from the TOML file, the
//! `INFERCACHE_*` environment and the command-line flags.
//!
//! Every server-wide setting is one field of the `settings!` declaration
//! below (per-model ones: `model.rs`; the macro: `declare.rs`). Its doc
//! comment is its `--help` text (and the README's row for it, which a test
//! checks against this list); its section says whether a reload changes
//! it (`live`) or a running server keeps it (`fixed`). Precedence: flag > environment > file > declared default
//! (clap merges flags with their variables into one layer, the file is
//! another, and `fill_from` merges them). Every problem is reported as one
//! line naming the key, so an operator knows what to fix without reading
//! a backtrace.

#[macro_use]
mod declare;
mod file;
mod model;
#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytesize::ByteSize;
use serde::Deserialize;

pub use model::{ModelConfig, ModelLive, Pooling};

use crate::limits::ENTRY_RESERVE;

settings! {
    /// Flags of `infercache serve`; every setting also has an
    /// `INFERCACHE_*` variable and a key of the same name in the file.
    #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ServeArgs {
        /// TOML config file (see README: Configuration).
        #[arg(long, env = "INFERCACHE_CONFIG")]
        #[serde(skip)]
        pub config: Option<PathBuf>,
        /// Log lines: `text` (human-readable) or `json` (one object per line)
        /// [default: text]. A flag or variable only: logging starts before the
        /// config file is read.
        #[arg(long, env = "INFERCACHE_LOG_FORMAT", value_enum, display_order = 1000)]
        #[serde(skip)]
        pub log_format: Option<LogFormat>,
        /// Serve a model: NAME=PATH (repeatable; other settings at defaults).
        #[arg(
            long = "model",
            value_name = "NAME=PATH",
            value_parser = model::parse_model_flag,
            display_order = 1000
        )]
        #[serde(default, rename = "model")]
        pub models: Vec<ModelConfig>,
    }

    /// The validated configuration, passed whole to the server.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// The file's models, then the flags'.
        pub models: Vec<ModelConfig>,
    }

    fixed {
        /// `HOST:PORT` or `unix:/path/to.sock` [default: 127.0.0.1:7600]
        #[arg(long, env = "INFERCACHE_LISTEN")]
        listen: String => Listen = Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 7600))),
        /// Directory of the disk tier [default: ./infercache-data]
        #[arg(long, env = "INFERCACHE_DATA_DIR")]
        data_dir: PathBuf = "./infercache-data".into(),
        /// Memory tier size, e.g. 256MiB [default: 256MiB]
        #[arg(long, env = "INFERCACHE_MEMORY_CAPACITY")]
        memory_capacity: ByteSize => u64 = 256 << 20,
        /// Disk tier size, e.g. 4GiB [default: 4GiB]
        #[arg(long, env = "INFERCACHE_DISK_CAPACITY")]
        disk_capacity: ByteSize => u64 = 4 << 30,
        /// Size of the VRAM-budget semaphore in units [default: 16]
        #[arg(long, env = "INFERCACHE_VRAM_UNITS")]
        vram_units: u32 = 16,
        /// Bound of the disk writer's queue, in writes [default: 16384]
        #[arg(long, env = "INFERCACHE_WRITE_QUEUE")]
        write_queue: usize = 16384,
        /// Most writes committed in one transaction [default: 1024]
        #[arg(long, env = "INFERCACHE_WRITE_BATCH")]
        write_batch: usize = 1024,
        /// How long a commit waits for more writes, e.g. 1ms [default: 0ms]
        #[arg(long, env = "INFERCACHE_WRITE_DELAY")]
        #[serde(deserialize_with = "declare::humantime")]
        write_delay: humantime::Duration => Duration = Duration::ZERO,
        /// How often expired disk entries are swept, e.g. 30s [default: 30s]
        #[arg(long, env = "INFERCACHE_SWEEP_INTERVAL")]
        #[serde(deserialize_with = "declare::humantime")]
        sweep_interval: humantime::Duration => Duration = Duration::from_secs(30),
        /// ONNX Runtime shared library [default: $ORT_DYLIB_PATH, else
        /// assets/onnxruntime/libonnxruntime.so]
        #[arg(long, env = "INFERCACHE_ONNXRUNTIME")]
        onnxruntime: PathBuf => Option<PathBuf> = None,
        /// Most client connections at once; more wait to be accepted [default: 1024]
        #[arg(long, env = "INFERCACHE_MAX_CONNECTIONS")]
        max_connections: usize = 1024,
        /// Time a client has to send a request's head, e.g. 10s [default: 10s]
        #[arg(long, env = "INFERCACHE_HEADER_TIMEOUT")]
        #[serde(deserialize_with = "declare::humantime")]
        header_timeout: humantime::Duration => Duration = Duration::from_secs(10),
        /// Longest wait for the next piece of a request body, e.g. 30s [default: 30s]
        #[arg(long, env = "INFERCACHE_BODY_TIMEOUT")]
        #[serde(deserialize_with = "declare::humantime")]
        body_timeout: humantime::Duration => Duration = Duration::from_secs(30),
        /// Redis or Valkey of the shared tier: redis://[user:pass@]host:port[/db],
        /// rediss:// (TLS) or redis+unix:///path.sock; with shared_cluster, a
        /// comma-separated list of seed nodes [default: none, no shared tier]
        #[arg(long, env = "INFERCACHE_SHARED_URL", hide_env_values = true)]
        shared_url: SharedUrl => Option<SharedUrl> = None,
        /// shared_url names the seed nodes of a Redis Cluster [default: false]
        #[arg(long, env = "INFERCACHE_SHARED_CLUSTER")]
        shared_cluster: bool = false,
        /// Longest wait of a request on the shared tier, e.g. 100ms [default: 100ms]
        #[arg(long, env = "INFERCACHE_SHARED_TIMEOUT")]
        #[serde(deserialize_with = "declare::humantime")]
        shared_timeout: humantime::Duration => Duration = Duration::from_millis(100),
        /// Lifetime of entries in the shared tier, e.g. 1d [default: none,
        /// Redis's eviction policy decides]
        #[arg(long, env = "INFERCACHE_SHARED_TTL")]
        #[serde(deserialize_with = "declare::humantime")]
        shared_ttl: humantime::Duration => Option<Duration> = None,
        /// Largest value written to the shared tier; larger ones stay local [default: 4MiB]
        #[arg(long, env = "INFERCACHE_SHARED_MAX_VALUE")]
        shared_max_value: ByteSize => u64 = 4 << 20,
    }

    live {
        /// Largest value accepted [default: 16MiB]
        #[arg(long, env = "INFERCACHE_MAX_VALUE_SIZE")]
        max_value_size: ByteSize => u64 = default_max_value_size(disk_capacity),
        /// Bearer token required on every endpoint but health checks.
        #[arg(long, env = "INFERCACHE_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Secret => Option<Secret> = None,
        /// How long one request may wait for a result, e.g. 30s [default: 30s]
        #[arg(long, env = "INFERCACHE_REQUEST_TIMEOUT")]
        #[serde(deserialize_with = "declare::humantime")]
        request_timeout: humantime::Duration => Duration = Duration::from_secs(30),
        /// Largest inference request body [default: 64MiB]
        #[arg(long, env = "INFERCACHE_MAX_REQUEST_SIZE")]
        max_request_size: ByteSize => u64 = 64 << 20,
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
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

impl declare::Resolve<String> for Listen {
    fn resolve(s: String) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Listen::Unix(path.into()));
        }
        s.parse()
            .map(Listen::Tcp)
            .map_err(|_| format!("`{s}` is neither HOST:PORT (e.g. 127.0.0.1:7600) nor unix:/path"))
    }
}

/// A secret setting (the auth token). Its `Debug` is `<redacted>`, so a
/// config that holds one can derive `Debug` and be logged; it derefs to
/// the text for the one place that compares it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.into())
    }
}

/// Where the shared tier is (`shared_url`). It may hold a password, so its
/// `Debug` (the logged config) replaces every URL's password with
/// `<redacted>`; the text itself is for the one place that connects.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SharedUrl(String);

impl SharedUrl {
    /// The URLs: one, or a cluster's seed nodes.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

impl fmt::Debug for SharedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: Vec<String> = self.urls().map(redact_password).collect();
        write!(f, "{:?}", redacted.join(","))
    }
}

impl From<String> for SharedUrl {
    fn from(text: String) -> SharedUrl {
        SharedUrl(text)
    }
}

/// `scheme://user:pass@rest` as `scheme://user:<redacted>@rest`; a URL
/// with no password as it is.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:<redacted>{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// The live configuration: handlers read the latest value on each use, so
/// a reload takes effect without dropping a request.
pub type Live = tokio::sync::watch::Receiver<Arc<Config>>;

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
        let mut layer = args.clone();
        if let Some(path) = &args.config {
            let mut file = file::read(path)?;
            layer.fill_from(&mut file);
            file.models.append(&mut layer.models);
            layer.models = file.models;
        }
        let config = Config::from_layer(layer)?;
        config.validate()?;
        Ok(config)
    }

    /// The settings of the model called `name`.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Re-read the configuration for a live reload (SIGHUP). The `live`
    /// settings, server-wide and per model, take effect; the `fixed` ones,
    /// the set of models and each model's file keep their current values
    /// and are named in the returned list.
    pub fn reloaded(&self, args: &ServeArgs) -> Result<(Config, Vec<String>), ConfigError> {
        let mut next = Config::from_args(args)?;
        let mut kept: Vec<String> = next.keep_fixed(self).into_iter().map(Into::into).collect();
        let mut models = Vec::with_capacity(self.models.len());
        for old in &self.models {
            let Some(new) = next.model(&old.name) else {
                kept.push(format!("model `{}` (removed)", old.name));
                models.push(old.clone());
                continue;
            };
            let mut new = new.clone();
            let mut fixed = new.keep_fixed(old);
            // A model is its name and its file: a new file is a new model.
            if new.path != old.path {
                new.path = old.path.clone();
                fixed.insert(0, "path");
            }
            if !fixed.is_empty() {
                kept.push(format!("model `{}` ({})", old.name, fixed.join(", ")));
            }
            models.push(new);
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

    fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_capacity == 0 {
            return Err(invalid("memory_capacity", "must be greater than 0"));
        }
        if self.disk_capacity == 0 {
            return Err(invalid("disk_capacity", "must be greater than 0"));
        }
        let reserve = ENTRY_RESERVE;
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
        if let Some(url) = &self.shared_url {
            let urls: Vec<&str> = url.urls().collect();
            if urls.is_empty() || (urls.len() > 1 && !self.shared_cluster) {
                return Err(invalid(
                    "shared_url",
                    "must be one URL (a list of seed nodes needs shared_cluster = true)",
                ));
            }
            for one in urls {
                const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
                if !SCHEMES.iter().any(|s| one.starts_with(s)) {
                    return Err(invalid(
                        "shared_url",
                        format!(
                            "`{}` is not redis://, rediss:// or redis+unix://",
                            redact_password(one)
                        ),
                    ));
                }
            }
        } else if self.shared_cluster {
            return Err(invalid("shared_cluster", "needs shared_url"));
        }
        if self.shared_timeout.is_zero() {
            return Err(invalid("shared_timeout", "must be greater than 0"));
        }
        if matches!(self.shared_ttl, Some(ttl) if ttl.is_zero()) {
            return Err(invalid("shared_ttl", "must be greater than 0 when set"));
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
        .saturating_sub(ENTRY_RESERVE)
        .clamp(1, 16 << 20)
}
