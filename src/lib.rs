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
//!   -> disk writes      store::writer        group commit, then mirror to memory
//! ```
//!
//! The same engine runs without HTTP: open a [`Store`] on a directory and
//! `get`/`put`/`delete` (see `examples/embedded_kv.rs`), or wrap it in a
//! [`Memo`] and `get_or_compute` (see `examples/memoize.rs`).

mod blocking;
pub mod config;
pub mod error;
pub mod events;
pub mod grpc;
pub mod http;
pub mod infer;
mod limits;
pub mod listen;
pub mod memo;
pub mod metrics;
mod reload;
pub mod server;
pub mod state;
pub mod store;
pub mod warm;

pub use config::{Config, ServeArgs};
pub use error::{Error, Result};
/// Key construction lives with the inference code that builds keys; this
/// path stays for library users (`infercache::key::KeyBuilder`).
pub use infer::key;
pub use memo::{CacheStatus, Lookup, Memo, Policy, Store, Tier};
pub use server::run;
pub use store::{Entry, Key, StoreOptions};
