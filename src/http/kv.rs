//! The plain key-value API: `PUT/GET/HEAD/DELETE /v1/kv/{key}`.
//!
//! Keys are the URL path after `/v1/kv/`, percent-decoded to raw bytes (so
//! any byte string of 1 to 1024 bytes is a key, `/` included). `PUT`
//! answers 204 only once its entry is durable on disk.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use percent_encoding::percent_decode_str;

use super::{read_body, AppState};
use crate::{
    error::{Error, Result},
    store::{Entry, Key, KV_NAMESPACE, TTL_RANGE},
};

/// Longest key accepted, in bytes after URL decoding.
pub const MAX_KEY_LEN: usize = 1024;

fn key_from(uri: &Uri) -> Result<Key> {
    let raw = uri.path().strip_prefix("/v1/kv/").unwrap_or_default();
    let id: Vec<u8> = percent_decode_str(raw).collect();
    if id.is_empty() || id.len() > MAX_KEY_LEN {
        return Err(Error::BadKey {
            len: id.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(Key::new(KV_NAMESPACE, id))
}

/// `?ttl=SECONDS`, the only query parameter PUT takes.
fn ttl_from(query: Option<&str>) -> Result<Option<Duration>> {
    let mut ttl = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "ttl" {
            return Err(Error::BadRequest(format!(
                "unknown query parameter `{name}`; PUT takes only ttl=SECONDS"
            )));
        }
        let secs = value
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .filter(|d| TTL_RANGE.contains(d))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "ttl must be a whole number of seconds from {} to {}, got `{value}`",
                    TTL_RANGE.start().as_secs(),
                    TTL_RANGE.end().as_secs()
                ))
            })?;
        ttl = Some(secs);
    }
    Ok(ttl)
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let key = key_from(&uri)?;
    let ttl = ttl_from(uri.query())?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::BadRequest("Content-Type must be visible ASCII".into()))
        })
        .transpose()?;
    // A small body can be a slice of the connection's 8 KiB read buffer:
    // copy it, or every cached value would keep a whole buffer alive.
    let body = read_body(&headers, body, state.config().max_value_size).await?;
    let value = bytes::Bytes::copy_from_slice(&body);
    let entry = Entry {
        value,
        content_type: content_type.map(Into::into),
        expires_at: ttl.map(|ttl| state.store.clock().deadline(ttl)),
    };
    state.store.put(key, entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Response> {
    let key = key_from(&uri)?;
    let Some((entry, tier)) = state.store.get(&key).await? else {
        return Err(Error::NotFound("no entry under this key".into()));
    };
    let content_type = entry
        .content_type
        .as_deref()
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::HeaderName::from_static("x-cache-tier"),
                HeaderValue::from_static(tier.as_str()),
            ),
        ],
        Body::from(entry.value),
    )
        .into_response())
}

pub async fn delete(State(state): State<Arc<AppState>>, uri: Uri) -> Result<StatusCode> {
    state.store.delete(key_from(&uri)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded_bytes() {
        let uri: Uri = "/v1/kv/a%2Fb%FF".parse().unwrap();
        assert_eq!(&key_from(&uri).unwrap().id[..], b"a/b\xff");
        let empty: Uri = "/v1/kv/".parse().unwrap();
        assert!(matches!(
            key_from(&empty),
            Err(Error::BadKey { len: 0, .. })
        ));
    }

    #[test]
    fn ttl_is_validated() {
        assert_eq!(
            ttl_from(Some("ttl=5")).unwrap(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(ttl_from(None).unwrap(), None);
        for bad in [
            "ttl=0",
            "ttl=-1",
            "ttl=abc",
            "ttl=",
            "tll=5",
            "ttl=99999999999999",
        ] {
            assert!(ttl_from(Some(bad)).is_err(), "{bad}");
        }
    }
}
