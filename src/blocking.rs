//! CPU-heavy work off the async workers (STYLE habit 4): decoding big
//! bodies, hashing many rows, tokenizing, assembling large outputs. Every
//! layer uses it, so it sits below them all.

use crate::error::{Error, Result};

/// Inputs smaller than this are worked on in place: moving them to another
/// thread would cost more than the work.
const INLINE_BYTES: usize = 64 << 10;

/// Whether work over `bytes` of input is small enough to run in place
/// (what [`off_runtime`] does with it), for a caller that would otherwise
/// copy its input to hand it over.
pub fn in_place(bytes: usize) -> bool {
    bytes < INLINE_BYTES
}

/// Run CPU-heavy `work` over `bytes` of input (tokenizing, big JSON) on the
/// blocking pool, so the async workers keep answering other requests
/// meanwhile; small work runs right here.
pub async fn off_runtime<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if in_place(bytes) {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Compute(format!("a blocking task failed: {e}")))?
}
