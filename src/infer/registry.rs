//! The model registry: every configured model, loaded once at start-up,
//! read-mostly behind a lock.
//!
//! Loading a model reads its file (blake3 digest: a new file never serves
//! old results), opens its ONNX Runtime sessions, learns its inputs and
//! outputs, gets its disk namespace and starts its batcher. A model that
//! cannot load stops the start-up with a message naming it. When the ONNX
//! Runtime library itself is missing the registry stays empty and every
//! model request answers 503 with the install hint, while the KV API works.
//!
//! Each model holds a `watch` of its live knobs ([`ModelLive`]): the
//! reload step publishes them once (`Registry::publish`); the batcher
//! and the lookups read the latest value without looking anything up.

use std::{collections::HashMap, sync::Arc};

use parking_lot::RwLock;
use tokio::sync::watch;

use super::{
    backend::{self, Backend, BackendOptions, IoSpec},
    batcher::{Batcher, Settings},
    budget::Budget,
    key::ModelDigest,
    tokenize::TextModel,
};
use crate::{
    config::{Config, ModelConfig, ModelLive},
    error::{Error, Result},
    events::Events,
    infer::metrics::ModelMetrics,
    memo::Store,
};

/// A loaded model.
pub struct Model {
    pub config: ModelConfig,
    pub namespace: u32,
    pub digest: ModelDigest,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// Every input and output has a dynamic first dimension: requests are
    /// split into rows, cached and batched per row.
    pub batchable: bool,
    /// Tokenizer and pooling of a text model (`tokenizer` configured).
    pub text: Option<TextModel>,
    pub batcher: Batcher,
    /// The live knobs; `config` holds them as they were at start-up.
    knobs: watch::Sender<ModelLive>,
}

impl Model {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The model's live knobs as of now.
    pub fn knobs(&self) -> ModelLive {
        *self.knobs.borrow()
    }
}

/// All models, by name.
pub struct Registry {
    /// Hashed with aHash: the hot infer route looks its model up by name on
    /// every request, and SipHash cost a twentieth of an answer hit
    /// (ARCHITECTURE.md §1, "The hot path").
    models: RwLock<HashMap<String, Arc<Model>, ahash::RandomState>>,
    /// Why models cannot run here (no ONNX Runtime), if so.
    unavailable: Option<String>,
}

impl Registry {
    /// Load every model of `config`, concurrently; their batchers report
    /// runs to `events` and `metrics`.
    pub async fn load(
        config: &Config,
        store: &Store,
        budget: &Budget,
        events: &Events,
        metrics: &ModelMetrics,
    ) -> Result<Registry> {
        let mut registry = Registry {
            models: RwLock::default(),
            unavailable: None,
        };
        if config.models.is_empty() {
            return Ok(registry);
        }
        let library = backend::resolve_library(config.onnxruntime.as_deref());
        let init = tokio::task::spawn_blocking(move || backend::init_runtime(&library))
            .await
            .map_err(|e| Error::Unavailable(format!("loading ONNX Runtime panicked: {e}")))?;
        if let Err(e) = init {
            tracing::warn!("models are disabled, the KV API still works: {e}");
            registry.unavailable = Some(e.to_string());
            return Ok(registry);
        }
        let loads = config
            .models
            .iter()
            .map(|m| load_one(m.clone(), store, budget, events, metrics));
        let models = futures::future::try_join_all(loads).await?;
        *registry.models.get_mut() = models
            .into_iter()
            .map(|m| (m.name().to_string(), m))
            .collect();
        Ok(registry)
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Model>> {
        if let Some(model) = self.models.read().get(name) {
            return Ok(model.clone());
        }
        match &self.unavailable {
            Some(why) => Err(Error::Unavailable(why.clone())),
            None => Err(Error::NotFound(format!("no model named `{name}`"))),
        }
    }

    /// Publish each model's live knobs from a reloaded `config` (which
    /// holds every loaded model: a reload keeps the set of models).
    pub(crate) fn publish(&self, config: &Config) {
        for (name, model) in self.models.read().iter() {
            if let Some(settings) = config.model(name) {
                model.knobs.send_replace(settings.live());
            }
        }
    }

    /// Whether models can run (ONNX Runtime loaded, or none configured).
    pub fn ready(&self) -> bool {
        self.unavailable.is_none()
    }

    /// Names of the loaded models, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.models.read().keys().cloned().collect();
        names.sort();
        names
    }
}

async fn load_one(
    config: ModelConfig,
    store: &Store,
    budget: &Budget,
    events: &Events,
    metrics: &ModelMetrics,
) -> Result<Arc<Model>> {
    let path = config.path.clone();
    let options = BackendOptions {
        intra_threads: config.threads,
        instances: config.instances,
        nice: config.nice,
    };
    let blocking_config = config.clone();
    let (digest, backend, text) = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::Unavailable(format!("cannot read model {}: {e}", path.display()))
        })?;
        let digest = *blake3::hash(&bytes).as_bytes();
        let backend = Backend::open(&path, &options)?;
        let text = match &blocking_config.tokenizer {
            Some(tokenizer) => Some(TextModel::load(
                &blocking_config,
                tokenizer,
                backend.inputs(),
                backend.outputs(),
            )?),
            None => None,
        };
        Ok::<_, Error>((digest, backend, text))
    })
    .await
    .map_err(|e| Error::Unavailable(format!("loading a model panicked: {e}")))??;
    let namespace = store.namespace(&config.name).await?;
    let inputs = backend.inputs().to_vec();
    let outputs = backend.outputs().to_vec();
    let batchable = inputs
        .iter()
        .chain(&outputs)
        .all(|spec| spec.shape.first() == Some(&-1));
    if backend.on_gpu() {
        tracing::info!(model = %config.name, "running on CUDA");
    }
    tracing::info!(
        model = %config.name,
        batchable,
        digest = %blake3::Hash::from_bytes(digest).to_hex(),
        "model loaded"
    );
    let knobs = watch::Sender::new(config.live());
    let batcher = Batcher::spawn(
        Arc::new(backend),
        Settings {
            model: config.name.clone(),
            batchable,
            padded: text.is_some(),
            vram_units: config.vram_units,
            instances: config.instances,
            nice: config.nice,
        },
        budget.clone(),
        metrics.series(&config.name),
        events.clone(),
        knobs.subscribe(),
    )?;
    Ok(Arc::new(Model {
        config,
        namespace,
        digest,
        inputs,
        outputs,
        batchable,
        text,
        batcher,
        knobs,
    }))
}
