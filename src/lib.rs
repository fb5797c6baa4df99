//! infercache: a memoizing cache for machine-learning model results.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! HTTP request          http::{kv, ops}      routes, one error mapping
//! gRPC request          grpc                 KServe v2 service, same listener
//! shared by both        state                AppState, token, Cache-Control
//!   -> key              infer::key           blake3 over model, input, params
//!   -> read path        memo                 the tier chain, then coalesce,
//!                                            then compute, then write back
//!   -> coalesce         memo::inflight       one computation per key, fan-out
//!   -> memory tier      store::memory        moka, byte-weighted, TTL
//!   -> disk tier        store::disk          redb, byte-bounded, durable
//!   -> disk writes      store::writer        group commit; a KV write reaches
//!                                            memory after its commit
//! ```
//!
//! The same engine runs without HTTP: open a [`Store`] on a directory and
//! `get`/`put`/`delete` (see `examples/embedded_kv.rs`), or wrap it in a
//! [`Memo`] and `get_or_compute` (see `examples/memoize.rs`).
//!
//! What is public is what this page re-exports, plus `config`, `error`,
//! `server`, `warm` and `grpc::proto`; the rest is internal
//! (ARCHITECTURE.md §1). The `testing` feature adds [`testing`], the
//! internals the test suite and benchmarks drive.

mod blocking;
pub mod config;
pub mod error;
pub(crate) mod events;
pub mod grpc;
pub(crate) mod http;
pub(crate) mod infer;
mod limits;
pub(crate) mod listen;
pub(crate) mod memo;
pub(crate) mod metrics;
mod reload;
pub mod server;
pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod telemetry;
pub mod warm;

pub use config::{Config, ServeArgs};
pub use error::{Error, Result};
/// Key construction lives with the inference code that builds keys; this
/// path stays for library users (`infercache::key::KeyBuilder`).
pub use infer::key;
pub use listen::bind_unix;
pub use memo::{CacheStatus, Lookup, Memo, Policy, Store, Tier};
pub use server::run;
pub use store::{Entry, Key, StoreOptions, KV_NAMESPACE, TTL_RANGE};

/// Internals that the integration tests and benchmarks drive directly (the
/// ONNX Runtime backend, the accept loop, the full-disk switch): built
/// only with the `testing` feature, and not a stable API.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::infer::{backend, tensor};
    pub use crate::listen::{serve, Limits, MAX_CONCURRENT_STREAMS};
    pub use crate::store::fault::DiskFull;
}
