//! infercache: a memoizing cache for machine-learning model results.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! HTTP request          http::{kv, ops}      routes, one error mapping
//! gRPC request          grpc                 KServe v2 service, same listener
//! shared by both        state                AppState, token, Cache-Control
//!   -> key              key                  blake3 over model, input, params
//!   -> read path        memo                 tiers, then coalesce, then compute
//!   -> memory tier      store::memory        moka, byte-weighted, TTL
//!   -> disk tier        store::disk          redb, byte-bounded, durable
//!   -> coalesce         coalesce             one computation per key, fan-out
//!   -> store            store::writer        group commit, then mirror to memory
//! ```
//!
//! The same engine runs without HTTP: open a [`Store`] on a directory and
//! `get`/`put`/`delete` (see `examples/embedded_kv.rs`), or wrap it in a
//! [`Memo`] and `get_or_compute` (see `examples/memoize.rs`).

pub mod coalesce;
pub mod config;
pub mod error;
pub mod events;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod key;
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
pub use memo::{CacheStatus, Lookup, Memo, Policy};
pub use server::run;
pub use store::{Entry, Key, Store, StoreOptions, Tier};
