//! `[[model]]` entries and `--model NAME=PATH`: one model's settings,
//! declared once (defaults included) and validated before anything is
//! loaded.
//!
//! A model's `live` settings reach its batcher and its lookups through a
//! `watch` of [`ModelLive`] that the reload step publishes (see
//! `infer/registry.rs`), so nothing looks a model up by name per batch or
//! per row. The fallback is the same for every one of them: the model's
//! own value, else the default declared here. (No model setting has a
//! server-wide counterpart; server-wide ones such as `request_timeout` are
//! read from the server's configuration.)

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::limits::TTL_RANGE;

settings! {
    /// One `[[model]]` table as written.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ModelLayer {
        name: String,
        path: PathBuf,
    }

    /// One model to serve.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(try_from = "ModelLayer")]
    pub struct ModelConfig {
        /// `[A-Za-z0-9_.-]+`; the URL path segment and the cache namespace.
        pub name: String,
        /// The `.onnx` file (relative paths: to the config file's directory).
        pub path: PathBuf,
    }

    fixed {
        /// VRAM-budget permits taken per run.
        vram_units: u32 = 1,
        /// ONNX Runtime intra-op threads per run; by default the physical
        /// cores, as ONNX Runtime itself would choose.
        threads: usize = physical_cores(),
        /// How much lower than the server's the OS priority of the
        /// threads that run this model is (niceness added, 0-19, Linux):
        /// above 0, cache hits and the rest of the HTTP side go first when
        /// they compete with a busy model for the cores.
        nice: u8 = 10,
        /// Sessions, i.e. runs of this model that may proceed at once.
        instances: usize = 1,
        /// A `tokenizer.json`: makes this a text model served at
        /// `/v1/embeddings` (relative paths: to the config file's directory).
        tokenizer: PathBuf => Option<PathBuf> = None,
        /// Text models: tokens kept per text (longer texts are truncated).
        max_tokens: usize = 256,
        /// Text models: `mean` (over the attention mask) or `cls`.
        pooling: Pooling = Pooling::Mean,
        /// Text models: L2-normalize embeddings.
        normalize: bool = true,
    }

    live #[derive(Debug, Clone, Copy, PartialEq)] pub struct ModelLive {
        /// Rows per run.
        max_batch: usize = 32,
        /// How long a batch waits for one more row once an instance is
        /// free to run it (never longer in all than the last run took).
        max_delay_ms: u64 = 2,
        /// Bound of the batcher's queue, in rows; full answers 429.
        queue: usize = 4096,
        /// Lifetime of cached results, from 1s to ten years; none: until
        /// evicted.
        #[serde(with = "humantime_serde")]
        ttl: Duration => Option<Duration> = None,
        /// Text models: most padded tokens (texts x longest text) per run.
        max_batch_tokens: usize = 16384,
        /// Text models: most texts in one request.
        max_inputs: usize = 2048,
    }
}

impl TryFrom<ModelLayer> for ModelConfig {
    type Error = ConfigError;

    fn try_from(layer: ModelLayer) -> Result<ModelConfig, ConfigError> {
        ModelConfig::from_layer(layer)
    }
}

/// The highest niceness (the lowest priority) Linux knows.
const MAX_NICE: u8 = 19;

/// The machine's physical cores, at most the cores this process may use:
/// what ONNX Runtime picks for intra-op threads when none are given
/// (hyper-threads share a core's arithmetic units, so more threads do not
/// compute faster).
fn physical_cores() -> usize {
    num_cpus::get_physical().min(num_cpus::get()).max(1)
}

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps.
    #[default]
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }
}

impl ModelConfig {
    /// A model with every setting at its default.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ModelConfig {
        ModelConfig::from_layer(ModelLayer {
            name: name.into(),
            path: path.into(),
            ..ModelLayer::default()
        })
        .expect("the declared defaults are valid")
    }

    /// Check one model against the server-wide VRAM budget.
    pub(super) fn validate(&self, budget: u32) -> Result<(), ConfigError> {
        let key = |field: &str| format!("model `{}`: {field}", self.name);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 128
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(invalid(
                "model.name",
                format!("`{}` must be 1 to 128 of [A-Za-z0-9_.-]", self.name),
            ));
        }
        if !self.path.is_file() {
            return Err(invalid(
                &key("path"),
                format!("{} is not a readable file", self.path.display()),
            ));
        }
        if self.vram_units == 0 || self.vram_units > budget {
            return Err(invalid(
                &key("vram_units"),
                format!(
                    "{} must be between 1 and the server's vram_units ({budget})",
                    self.vram_units
                ),
            ));
        }
        if self.nice > MAX_NICE {
            return Err(invalid(
                &key("nice"),
                format!("{} must be between 0 and {MAX_NICE}", self.nice),
            ));
        }
        if let Some(ttl) = self.ttl.filter(|t| !TTL_RANGE.contains(t)) {
            return Err(invalid(
                &key("ttl"),
                format!(
                    "`{}` must be between {}s and {}days (ten years)",
                    humantime::format_duration(ttl),
                    TTL_RANGE.start().as_secs(),
                    TTL_RANGE.end().as_secs() / (24 * 3600),
                ),
            ));
        }
        if let Some(tokenizer) = self.tokenizer.as_ref().filter(|t| !t.is_file()) {
            return Err(invalid(
                &key("tokenizer"),
                format!("{} is not a readable file", tokenizer.display()),
            ));
        }
        if self.tokenizer.is_some() && self.queue < self.max_inputs {
            return Err(invalid(
                &key("queue"),
                format!(
                    "must hold one whole request: at least max_inputs ({})",
                    self.max_inputs
                ),
            ));
        }
        if self.tokenizer.is_some() && self.max_batch_tokens < self.max_tokens {
            return Err(invalid(
                &key("max_batch_tokens"),
                format!("must be at least max_tokens ({})", self.max_tokens),
            ));
        }
        for (field, value) in [
            ("max_batch", self.max_batch),
            ("threads", self.threads),
            ("instances", self.instances),
            ("queue", self.queue),
            ("max_tokens", self.max_tokens),
            ("max_inputs", self.max_inputs),
        ] {
            if value == 0 {
                return Err(invalid(&key(field), "must be at least 1"));
            }
        }
        Ok(())
    }
}

impl ModelLive {
    /// `max_delay_ms` as a duration.
    pub fn max_delay(&self) -> Duration {
        Duration::from_millis(self.max_delay_ms)
    }
}

/// Parse `--model NAME=PATH`.
pub fn parse_model_flag(s: &str) -> Result<ModelConfig, String> {
    let (name, path) = s
        .split_once('=')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        .ok_or_else(|| format!("`{s}` is not NAME=PATH"))?;
    Ok(ModelConfig::new(name, path))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ServeArgs};

    /// A config file with one model (any readable file will do: nothing
    /// is loaded) whose `ttl` is `ttl`.
    fn with_ttl(ttl: &str) -> Result<Config, super::ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let text = format!("[[model]]\nname = \"mlp\"\npath = \"{model}\"\nttl = \"{ttl}\"\n");
        std::fs::write(file.path(), text).unwrap();
        let args = ServeArgs {
            config: Some(file.path().into()),
            ..Default::default()
        };
        Config::from_args(&args)
    }

    #[test]
    fn ttl_is_between_one_second_and_ten_years() {
        for bad in ["0s", "500ms", "20years", "3651days"] {
            let e = with_ttl(bad).unwrap_err();
            assert_eq!(e.key, "model `mlp`: ttl", "{bad}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        for good in ["1s", "1h", "3650days"] {
            assert!(with_ttl(good).is_ok(), "{good}");
        }
    }
}
