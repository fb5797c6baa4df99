//! The plain key-value API: `PUT/GET/HEAD/DELETE /v1/kv/{key}`.
//!
//! Keys are the URL path after `/v1/kv/`, percent-decoded to raw bytes (so
//! any byte string of 1 to 1024 bytes is a key, `/` included). `PUT`
//! answers 204 only once its entry is durable on disk.

use std::{borrow::Cow, future::Future, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri},
    response::Response,
};
use bytes::Bytes;
use http_body_util::Full;
use percent_encoding::percent_decode_str;

use super::{head::LastHead, read_body, AppState};
use crate::{
    error::{Error, Limit, Result},
    memo::Tier,
    store::{Entry, Key, KeyRef, KV_NAMESPACE, TTL_RANGE},
};

/// Longest key accepted, in bytes after URL decoding.
pub const MAX_KEY_LEN: usize = 1024;

/// The path every key follows.
const PREFIX: &str = "/v1/kv/";

fn key_from(uri: &Uri) -> Result<Key> {
    Ok(Key::new(KV_NAMESPACE, key_id(uri)?))
}

/// The key's bytes: the path after the prefix, percent-decoded, borrowed
/// unless the key has escapes.
fn key_id(uri: &Uri) -> Result<Cow<'_, [u8]>> {
    let raw = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    // Without a `%` decoding is the identity: skip its byte-by-byte pass.
    let id: Cow<'_, [u8]> = if raw.as_bytes().contains(&b'%') {
        percent_decode_str(raw).into()
    } else {
        Cow::Borrowed(raw.as_bytes())
    };
    if id.is_empty() || id.len() > MAX_KEY_LEN {
        return Err(Error::BadKey {
            len: id.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(id)
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
    store(&state, &uri, &headers, body).await
}

/// Whether `request` takes the hot route for `PUT /v1/kv/{key}`
/// ([`hot_put`]): the method, the path and the token are right. The router
/// serves anything else.
pub(super) fn is_hot_put<B>(state: &AppState, request: &Request<B>) -> bool {
    request.method() == Method::PUT
        && request.uri().path().starts_with(PREFIX)
        && state.authorize_headers(request.headers()).is_ok()
}

/// Store as the router would ([`put`]), without its matching, extractors
/// and layers (ARCHITECTURE.md §1): hyper's body read unboxed, the 204
/// answered with an unboxed empty body.
pub(super) fn hot_put<B>(
    state: Arc<AppState>,
    request: Request<B>,
) -> impl Future<Output = Result<Response<Full<Bytes>>>> + Send
where
    B: http_body::Body<Data = Bytes> + Send + Unpin,
    B::Error: std::fmt::Display,
{
    let (parts, body) = request.into_parts();
    async move {
        let status = store(&state, &parts.uri, &parts.headers, body).await?;
        let mut response = Response::new(Full::default());
        *response.status_mut() = status;
        Ok(response)
    }
}

/// Store the body under the key of `uri`; 204 once durable.
async fn store<B>(state: &AppState, uri: &Uri, headers: &HeaderMap, body: B) -> Result<StatusCode>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let key = key_from(uri)?;
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
    // Dropped before the commit: hyper can then reuse that buffer for the
    // connection's next read instead of allocating a new one.
    let body = read_body(body, state.config().max_value_size, Limit::ValueSize).await?;
    let value = bytes::Bytes::copy_from_slice(&body);
    drop(body);
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
    Ok(found(entry, tier).map(Body::new))
}

/// The hot route (ARCHITECTURE.md §1): `GET /v1/kv/{key}` answered from the
/// memory tier before the router, as [`get`] would answer it; `None` for
/// anything else (another method, a gRPC call, a refused token, a bad key,
/// a memory miss), which the router then serves. The token is checked
/// before the lookup, so a refused request counts no hit. The key is looked
/// up borrowed from the path, and the answer's body is not boxed.
pub(super) fn memory_hit<B>(
    state: &AppState,
    request: &Request<B>,
) -> Option<Response<Full<Bytes>>> {
    if request.method() != Method::GET || !request.uri().path().starts_with(PREFIX) {
        return None;
    }
    let headers = request.headers();
    if crate::grpc::is_grpc(headers) {
        return None;
    }
    state.authorize_headers(headers).ok()?;
    let id = key_id(request.uri()).ok()?;
    let entry = state.store.get_memory(&KeyRef {
        namespace: KV_NAMESPACE,
        id: &id,
    })?;
    Some(found(entry, Tier::Memory))
}

/// The answer to a GET that found `entry` in `tier`.
fn found(entry: Entry, tier: Tier) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(entry.value));
    *response.headers_mut() = head(tier, entry.content_type);
    response
}

/// The headers of a GET's answer: the value's content type
/// (`application/octet-stream` without one, or with one a header cannot
/// carry) and `X-Cache-Tier`, copied from the last head this thread built
/// while tier and content type stay the same, as they mostly do (a store
/// holds few content types; [`super::head`]).
fn head(tier: Tier, content_type: Option<Arc<str>>) -> HeaderMap {
    thread_local! {
        static LAST: LastHead<(Tier, Option<Arc<str>>)> = const { LastHead::new() };
    }
    LAST.with(|last| {
        last.get((tier, content_type), |(tier, content_type)| {
            build_head(*tier, content_type.as_deref())
        })
    })
}

fn build_head(tier: Tier, content_type: Option<&str>) -> HeaderMap {
    // Built at compile time: `from_static` checks its bytes when called.
    const X_CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");
    const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");
    let content_type = content_type
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or(OCTET_STREAM);
    let mut head = HeaderMap::with_capacity(2);
    head.insert(header::CONTENT_TYPE, content_type);
    head.insert(X_CACHE_TIER, HeaderValue::from_static(tier.as_str()));
    head
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
