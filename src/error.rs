//! The one error type of infercache.
//!
//! Every failure a caller can see is a variant here; `http::error` maps each
//! variant to a status code in one place. Errors are `Clone` because the
//! memoizer fans one computation's error out to every waiter, so payloads are
//! plain strings rather than source errors.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The key is empty or longer than the limit.
    #[error("key must be 1 to {max} bytes after URL decoding, got {len}")]
    BadKey { len: usize, max: usize },

    /// A request was malformed; the message says what to fix.
    #[error("{0}")]
    BadRequest(String),

    /// A value or request body is larger than the limit `over` sets.
    #[error("{over} ({limit} bytes)")]
    TooLarge { limit: u64, over: Limit },

    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),

    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,

    /// A bounded queue is full: the caller should retry later.
    #[error("{0} is full; retry later")]
    Overloaded(&'static str),

    /// The server is stopping and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,

    /// A waiter's own deadline passed before the result arrived.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// A computation failed (or panicked); shared with every waiter.
    #[error("computation failed: {0}")]
    Compute(String),

    /// A feature is present but cannot run here (e.g. no ONNX Runtime),
    /// or a tier it needs cannot take the request now.
    #[error("{0}")]
    Unavailable(String),

    /// The storage engine failed; the message carries redb's reason.
    #[error("storage error: {0}")]
    Storage(String),
}

impl Error {
    /// Wrap any storage-engine error.
    pub fn storage(err: impl std::fmt::Display) -> Self {
        Error::Storage(err.to_string())
    }
}

/// A computation's own error message.
impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Compute(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Compute(message.to_string())
    }
}

/// The limit a [`Error::TooLarge`] hit, as its message names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    #[error("value exceeds max_value_size")]
    ValueSize,
    #[error("request body exceeds max_request_size")]
    RequestSize,
    #[error("value exceeds what disk_capacity can hold")]
    DiskCapacity,
}
