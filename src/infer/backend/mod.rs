//! The ONNX Runtime backend: the only module that touches the `ort` crate.
//!
//! It owns three steps: finding and loading ONNX Runtime's shared library
//! ([`resolve_library`], [`init_runtime`]), opening a model file as a small
//! pool of sessions ([`Backend::open`]), and running one batch of canonical
//! [`Tensor`]s through it ([`Backend::run`]). Conversion between our
//! little-endian bytes and ort's typed buffers is bit-exact both ways.
//!
//! Invariants:
//! - **One ort `Environment` per process.** ort refuses to build a second
//!   one, even after the first is dropped, so it lives in a static, built once
//!   by [`init_runtime`] and never dropped.
//! - **No ort call after a failed load.** With `load-dynamic`, every ort call
//!   (even building an `ort::Error`) loads the library lazily and panics if it
//!   cannot. So [`Backend::open`] checks that the runtime is initialised and
//!   otherwise returns [`Error::Unavailable`]; the server keeps serving the KV
//!   API. A [`Backend`] existing proves the runtime is loaded.
//! - **We never build an `ort::Error` from a message** (`ort::Error::new`
//!   panics on one with a NUL byte; only a failed thread spawn is wrapped,
//!   for ONNX Runtime) and never unwrap an ort result: ort errors
//!   become crate errors carrying ort's message.
//! - **Blocking.** [`Backend::open`] and [`Backend::run`] block for as long as
//!   loading or inference takes: call them from `spawn_blocking` or a
//!   dedicated thread, never on a tokio worker.
//! - **One run per session at a time.** ort's `Session::run` takes
//!   `&mut self` (ONNX Runtime's `Run` is not thread-safe), so each session
//!   sits behind its own mutex and `instances` sessions allow that many
//!   concurrent runs. All sessions of a model run on the same device, so every
//!   instance computes the same bits.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod convert;

use ort::environment::{Environment, ThreadManager};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{Outlet, ValueType};
use parking_lot::{Mutex, MutexGuard};

use self::convert::{check_len, datatype_of, from_ort, to_ort};

use crate::error::{Error, Result};
use crate::infer::tensor::{DataType, Tensor};
use crate::infer::threads;

/// How to get a working ONNX Runtime; ends every "runtime missing" message.
const SETUP_HINT: &str = "Run scripts/setup (fetches onnxruntime==1.31.1 from PyPI into \
     assets/onnxruntime/) or pass --onnxruntime PATH / set ORT_DYLIB_PATH";

/// The process-wide environment; set only after the library loaded.
static RUNTIME: OnceLock<Environment> = OnceLock::new();
/// Serialises load attempts, so two callers never race `ort::init_from`.
static INIT: Mutex<()> = Mutex::new(());

/// Where ONNX Runtime's shared library is: `explicit` (`--onnxruntime`),
/// else `ORT_DYLIB_PATH`, else `assets/onnxruntime/libonnxruntime.so` under
/// the current directory, else the same under this crate's source directory
/// (so tests find it from any directory). When neither file exists, the
/// current-directory path is returned, for the error message.
pub fn resolve_library(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let file = format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let relative = Path::new("assets").join("onnxruntime").join(file);
    let in_cwd = match std::env::current_dir() {
        Ok(dir) => dir.join(&relative),
        Err(_) => relative.clone(),
    };
    if in_cwd.exists() {
        return in_cwd;
    }
    let in_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join(&relative);
    if in_crate.exists() {
        in_crate
    } else {
        in_cwd
    }
}

/// Load ONNX Runtime from `library` and build the process-wide environment.
///
/// Idempotent: once it succeeded, later calls return `Ok` at once (and keep
/// the library first loaded). After a failure nothing is kept, so a later
/// call may try again. On failure the [`Error::Unavailable`] message says
/// how to install the runtime.
pub fn init_runtime(library: &Path) -> Result<()> {
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let _guard = INIT.lock();
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let env = load_runtime(library)
        .map_err(|reason| Error::Unavailable(runtime_missing(library, &reason)))?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    // We hold INIT and saw the cell empty, so this cannot lose a race.
    let _ = RUNTIME.set(env);
    Ok(())
}

fn load_runtime(library: &Path) -> std::result::Result<Environment, String> {
    // ort resolves a relative path against the executable's directory
    // first; an absolute path means exactly the file the user named.
    let absolute = library.canonicalize().map_err(|e| e.to_string())?;
    ort::init_from(&absolute)
        .map_err(|e| e.to_string())?
        .with_name("infercache")
        .with_telemetry(false)
        .build()
        .map_err(|e| e.to_string())
}

/// The message for a runtime that cannot be loaded from `library`.
fn runtime_missing(library: &Path, reason: &str) -> String {
    format!(
        "ONNX Runtime not found at {}: {reason}. {SETUP_HINT}",
        library.display()
    )
}

/// One model input or output as the model declares it. Dynamic dims are -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// How to open a model.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Threads per session for one operator (0: ONNX Runtime's default, one
    /// per core).
    pub intra_threads: usize,
    /// Sessions to open, i.e. concurrent runs; 0 is taken as 1.
    pub instances: usize,
    /// How much lower than the server's the priority of ONNX Runtime's
    /// intra-op threads is (see `infer/threads.rs`); 0: ONNX Runtime
    /// creates them itself.
    pub nice: u8,
}

/// A loaded model: `instances` ort sessions of one file, each behind a
/// mutex. Holding one proves the runtime is loaded.
pub struct Backend {
    /// Never empty.
    sessions: Vec<Mutex<Session>>,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    on_gpu: bool,
}

/// Which device a new session should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Device {
    /// CUDA if it registers, else CPU with one warning (the first session).
    PreferGpu,
    /// CUDA or fail: the first session got it, so every instance must.
    Gpu,
    Cpu,
}

impl Backend {
    /// Load `path` into `options.instances` sessions. Blocking.
    ///
    /// With the `cuda` feature the first session tries CUDA; if it does not
    /// register, one warning is logged and every session runs on CPU.
    pub fn open(path: &Path, options: &BackendOptions) -> Result<Backend> {
        let cannot = |reason: String| {
            Error::Unavailable(format!("cannot load model {}: {reason}", path.display()))
        };
        let Some(env) = RUNTIME.get() else {
            return Err(cannot(format!("ONNX Runtime is not loaded. {SETUP_HINT}")));
        };
        // Checked here, not by ort: its "does not exist" error is built
        // with `ort::Error::new`, which panics on a path with a NUL byte.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(cannot("not a regular file".into())),
            Err(e) => return Err(cannot(e.to_string())),
        }

        let (first, on_gpu) = new_session(env, path, options, Device::PreferGpu).map_err(cannot)?;
        let inputs = io_specs("input", first.inputs()).map_err(cannot)?;
        let outputs = io_specs("output", first.outputs()).map_err(cannot)?;
        let device = if on_gpu { Device::Gpu } else { Device::Cpu };
        let mut sessions = vec![Mutex::new(first)];
        for _ in 1..options.instances.max(1) {
            let (session, _) = new_session(env, path, options, device).map_err(cannot)?;
            sessions.push(Mutex::new(session));
        }
        Ok(Backend {
            sessions,
            inputs,
            outputs,
            on_gpu,
        })
    }

    /// The model's inputs, in its declared order.
    pub fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    /// The model's outputs, in its declared order (and the order of
    /// [`Backend::run`]'s result).
    pub fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    /// Whether the sessions run on CUDA (always false without the feature).
    pub fn on_gpu(&self) -> bool {
        self.on_gpu
    }

    /// Run one batch. Blocking.
    ///
    /// `inputs` may come in any order and must name every model input
    /// exactly once, with its datatype and `len == elements * size`. Returns
    /// every model output in the model's order. Any failure, including ORT
    /// rejecting a shape, is [`Error::Compute`].
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let ordered = self.arrange(inputs).map_err(Error::Compute)?;
        let values = ordered
            .into_iter()
            .map(to_ort)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::Compute)?;
        let mut session = self.session();
        let outputs = session
            .run(values.as_slice())
            .map_err(|e| Error::Compute(e.to_string()))?;
        outputs
            .iter()
            .map(|(name, value)| from_ort(name, &value))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::Compute)
    }

    /// The inputs in the model's order, each checked against its spec.
    fn arrange<'a>(&self, inputs: &'a [Tensor]) -> std::result::Result<Vec<&'a Tensor>, String> {
        if let Some(t) = inputs
            .iter()
            .find(|t| !self.inputs.iter().any(|s| s.name == t.name))
        {
            let names: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "the model has no input `{}` (inputs: {})",
                t.name,
                names.join(", ")
            ));
        }
        self.inputs
            .iter()
            .map(|spec| {
                let mut named = inputs.iter().filter(|t| t.name == spec.name);
                let t = named
                    .next()
                    .ok_or_else(|| format!("missing input `{}`", spec.name))?;
                if named.next().is_some() {
                    return Err(format!("input `{}` given more than once", spec.name));
                }
                if t.datatype != spec.datatype {
                    return Err(format!(
                        "input `{}` is {} but the model takes {}",
                        t.name,
                        t.datatype.name(),
                        spec.datatype.name()
                    ));
                }
                check_len(t)?;
                Ok(t)
            })
            .collect()
    }

    /// A free session, else (all busy) wait for the first one.
    fn session(&self) -> MutexGuard<'_, Session> {
        self.sessions
            .iter()
            .find_map(|s| s.try_lock())
            .unwrap_or_else(|| self.sessions[0].lock())
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("instances", &self.sessions.len())
            .field("on_gpu", &self.on_gpu)
            .finish()
    }
}

/// Build one session of `path` on `device`; returns whether it uses CUDA.
fn new_session(
    env: &Environment,
    path: &Path,
    options: &BackendOptions,
    device: Device,
) -> std::result::Result<(Session, bool), String> {
    let builder = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| e.to_string())?
        .with_intra_threads(options.intra_threads)
        .map_err(|e| e.to_string())?;
    let builder = match options.nice {
        0 => builder,
        nice => builder
            .with_thread_manager(LowerPriority(nice))
            .map_err(|e| e.to_string())?,
    };
    let (mut builder, on_gpu) = attach_device(builder, path, device)?;
    let session = builder.commit_from_file(path).map_err(|e| e.to_string())?;
    Ok((session, on_gpu))
}

/// Creates ONNX Runtime's intra-op pool threads `nice` below the server's
/// priority, like the model's run threads.
struct LowerPriority(u8);

impl ThreadManager for LowerPriority {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        threads::spawn("ort-intra-op".into(), self.0, work).map_err(ort::Error::wrap)
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        // A pool thread that panicked has nothing left to clean up.
        let _ = thread.join();
        Ok(())
    }
}

#[cfg(feature = "cuda")]
fn attach_device(
    builder: SessionBuilder,
    path: &Path,
    device: Device,
) -> std::result::Result<(SessionBuilder, bool), String> {
    if device == Device::Cpu {
        return Ok((builder, false));
    }
    // `error_on_failure` makes a failed registration an error we can see
    // (by default ort logs it and silently stays on CPU).
    let cuda = ort::ep::CUDA::default().build().error_on_failure();
    match builder.with_execution_providers([cuda]) {
        Ok(builder) => Ok((builder, true)),
        Err(e) if device == Device::PreferGpu => {
            tracing::warn!(
                "CUDA unavailable for model {}, running on CPU: {e}",
                path.display()
            );
            Ok((e.recover(), false))
        }
        Err(e) => Err(format!(
            "CUDA failed for an extra instance (the first one got it): {e}"
        )),
    }
}

#[cfg(not(feature = "cuda"))]
fn attach_device(
    builder: SessionBuilder,
    _path: &Path,
    _device: Device,
) -> std::result::Result<(SessionBuilder, bool), String> {
    Ok((builder, false))
}

/// Our specs for a session's inputs or outputs (`kind` names which).
fn io_specs(kind: &str, outlets: &[Outlet]) -> std::result::Result<Vec<IoSpec>, String> {
    outlets
        .iter()
        .map(|o| match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => Ok(IoSpec {
                name: o.name().to_owned(),
                datatype: datatype_of(*ty).ok_or_else(|| {
                    format!(
                        "{kind} `{}` has element type {ty}, which infercache does not \
                         support (supported: BOOL, UINT8-64, INT8-64, FP32, FP64)",
                        o.name()
                    )
                })?,
                shape: shape.to_vec(),
            }),
            other => Err(format!(
                "{kind} `{}` is a {other}, not a tensor; only tensor inputs and outputs \
                 are supported",
                o.name()
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_runtime_message_says_how_to_fix_it() {
        let msg = runtime_missing(Path::new("/nowhere/libonnxruntime.so"), "No such file");
        assert!(
            msg.starts_with("ONNX Runtime not found at /nowhere/libonnxruntime.so: No such file. ")
        );
        assert!(msg.contains("scripts/setup"));
        assert!(msg.contains("onnxruntime==1.31.1"));
        assert!(msg.contains("--onnxruntime PATH"));
        assert!(msg.contains("ORT_DYLIB_PATH"));
    }

    #[test]
    fn explicit_library_path_wins() {
        let p = Path::new("/opt/ort/libonnxruntime.so.1.31.1");
        assert_eq!(resolve_library(Some(p)), p);
    }

    #[test]
    fn opening_a_missing_model_fails_without_touching_ort() {
        // Whether or not another test loaded the runtime, a missing file is
        // refused before any ort call.
        let options = BackendOptions {
            intra_threads: 1,
            instances: 1,
            nice: 0,
        };
        let err = Backend::open(Path::new("/nonexistent/model.onnx"), &options).unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(ref m) if m.contains("/nonexistent/model.onnx")),
            "{err}"
        );
    }
}
