//! Response heads of the hot routes, copied from the last one their thread
//! built (ARCHITECTURE.md §1, "The hot path").
//!
//! A hot route's answers mostly share one head (a KV hit's tier and content
//! type, an infer answer's cache status and header length change rarely),
//! and copying a `HeaderMap` costs a third of building one: each value is
//! checked byte by byte and each name hashed on insert.

use std::cell::RefCell;

use axum::http::HeaderMap;

/// The last head a thread built, and what it was built from.
pub(super) struct LastHead<K>(RefCell<Option<(K, HeaderMap)>>);

impl<K: PartialEq> LastHead<K> {
    pub(super) const fn new() -> Self {
        LastHead(RefCell::new(None))
    }

    /// The head of `of`: a copy of the last one when it was built from the
    /// same, else `build(&of)`, kept for the next call.
    pub(super) fn get(&self, of: K, build: impl FnOnce(&K) -> HeaderMap) -> HeaderMap {
        let mut last = self.0.borrow_mut();
        match &*last {
            Some((built, head)) if *built == of => head.clone(),
            _ => {
                let head = build(&of);
                *last = Some((of, head.clone()));
                head
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderValue};

    use super::*;

    #[test]
    fn a_head_is_rebuilt_only_when_what_it_is_built_from_changes() {
        let last = LastHead::new();
        let builds = std::cell::Cell::new(0);
        let head = |of: u16| {
            last.get(of, |of| {
                builds.set(builds.get() + 1);
                HeaderMap::from_iter([(header::CONTENT_LENGTH, HeaderValue::from(*of))])
            })
        };
        for (of, built) in [(1, 1), (1, 1), (2, 2), (1, 3)] {
            assert_eq!(head(of)[header::CONTENT_LENGTH], of.to_string());
            assert_eq!(builds.get(), built);
        }
    }
}
