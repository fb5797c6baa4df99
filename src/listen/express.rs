//! Simple HTTP/1 requests, served without hyper's per-request machinery
//! (ARCHITECTURE.md §1, "The hot path").
//!
//! Why: once the cache answers from memory, what is left of a hit is
//! mostly the HTTP server's: hyper's dispatcher, its buffered IO layers,
//! and for a request with a body a channel per body and a new read buffer
//! per request (the body still holds the old one when hyper reads on).
//! A plain request needs none of that: its head and whole body arrive in
//! one read, and its answer leaves in one write.
//!
//! A connection starts here. Each request is parsed with `httparse` (the
//! parser hyper uses) and served here when it is *simple*: HTTP/1.1, `GET`,
//! `POST`, `PUT` or `DELETE` on an origin-form target; no
//! `Transfer-Encoding`, `Expect`, `Upgrade` or `TE`; `Connection` only
//! `keep-alive` and `close`; at most one `Content-Length`, at most
//! [`MAX_BODY`], with the whole body already received. The first request
//! that is anything else (or a head longer than [`MAX_HEAD`], an HTTP/2
//! preface, bytes `httparse` refuses) hands the connection to hyper for the
//! rest of its life, with every byte not yet answered ([`Replay`]): hyper
//! sees what it would have seen from the start and answers as before.
//!
//! A request served here goes to the same [`App`] as hyper's, with its
//! whole body, in order, one at a time (as hyper serves HTTP/1). Its
//! response is written as hyper writes one: status line, headers,
//! `content-length` (chunked when the length is unknown; neither for 204
//! and 304), `date`, and `connection: close` when the connection closes
//! after it; with one `write` when it is at most [`MAX_FRAME`] bytes, and
//! flushed whenever the body has no frame ready (an event stream).

use std::{
    fmt::Write as _,
    io,
    mem::MaybeUninit,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::SystemTime,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::{
    header::{self, HeaderMap, HeaderName, HeaderValue},
    Method, Request, Response, StatusCode, Uri, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{Activity, App, BoxError, Busy, RequestBody, MAX_FRAME};

/// The longest head served here; a longer one goes to hyper (whose limit
/// is larger).
const MAX_HEAD: usize = 16 << 10;

/// The largest body served here.
const MAX_BODY: usize = 64 << 10;

/// The most header lines served here.
const MAX_HEADERS: usize = 32;

/// How a connection left [`serve`].
pub(super) enum Outcome<I> {
    /// Closed: by the client, an error, `Connection: close` or a drain.
    Closed,
    /// hyper serves the rest of the connection.
    Handover(Replay<I>),
}

/// Serve `io`'s simple requests with `app` until it closes or a request is
/// not simple. `activity` counts each request in progress; once it says
/// the connection drains, the connection closes after the request in
/// progress.
pub(super) async fn serve<I, A>(mut io: I, app: &A, activity: &Arc<Activity>) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
    A: App,
{
    let mut read = BytesMut::with_capacity(8 << 10);
    let mut out = BytesMut::new();
    loop {
        match parse(&mut read) {
            Ok((request, close)) => {
                let busy = Busy::start(activity.clone());
                let response = app.call(request).await;
                let close = close || activity.draining.load(Ordering::Acquire);
                let Ok(response) = response;
                let written = respond(&mut io, &mut out, response, close).await;
                drop(busy);
                if written.is_err() || close {
                    let _ = io.shutdown().await;
                    return Outcome::Closed;
                }
            }
            Err(Short::Head) => {
                if read.capacity() - read.len() < 1024 {
                    read.reserve(8 << 10);
                }
                match io.read_buf(&mut read).await {
                    Ok(0) | Err(_) => return Outcome::Closed,
                    Ok(_) => {}
                }
            }
            Err(Short::Body(missing)) => {
                // Only a body already received is read here (its head may
                // have filled the buffer); hyper waits for the rest of one
                // still on its way, under its body timeout.
                read.reserve(missing);
                match io.read_buf(&mut read).now_or_never() {
                    Some(Ok(0) | Err(_)) => return Outcome::Closed,
                    Some(Ok(_)) => {}
                    None => return Outcome::Handover(Replay::new(io, read)),
                }
            }
            Err(Short::NotSimple) => return Outcome::Handover(Replay::new(io, read)),
        }
    }
}

/// Why the bytes received so far give no simple request yet.
enum Short {
    /// Its head is not whole.
    Head,
    /// Its body is this many bytes short.
    Body(usize),
    /// They do not start with a simple request: hyper's to serve, as they
    /// are.
    NotSimple,
}

/// Where a request's head ends and what it declares.
struct Head {
    len: usize,
    method: Method,
    target: (usize, usize),
    headers: [(usize, usize, usize, usize); MAX_HEADERS],
    count: usize,
    body: usize,
    close: bool,
}

/// A simple request taken from the start of `read`, and whether the client
/// asked to close after it.
fn parse(read: &mut BytesMut) -> Result<(Request<RequestBody>, bool), Short> {
    if read.is_empty() {
        return Err(Short::Head);
    }
    let head = match scan(read) {
        Some(Some(head)) => head,
        Some(None) if read.len() < MAX_HEAD => return Err(Short::Head),
        _ => return Err(Short::NotSimple),
    };
    let len = head.len + head.body;
    if read.len() < len {
        return Err(Short::Body(len - read.len()));
    }
    let message = read.split_to(len).freeze();
    match build(&message, &head) {
        Some(request) => Ok((request, head.close)),
        None => {
            // Rare (a target `http` refuses): put the bytes back.
            let mut back = BytesMut::with_capacity(message.len() + read.len());
            back.extend_from_slice(&message);
            back.extend_from_slice(read);
            *read = back;
            Err(Short::NotSimple)
        }
    }
}

/// The head at the start of `read`: `Some(None)` while incomplete, `None`
/// when it is not simple.
fn scan(read: &[u8]) -> Option<Option<Head>> {
    let mut lines = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(read, &mut lines) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Some(None),
        Err(_) => return None,
    };
    if request.version != Some(1) {
        return None;
    }
    let method = match request.method? {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        _ => return None,
    };
    let target = request.path?;
    if !target.starts_with('/') {
        return None;
    }
    // Where a slice `httparse` returned starts in `read` (it slices its
    // input; anything else is not served here).
    let at = |s: &[u8]| {
        (s.as_ptr() as usize)
            .checked_sub(read.as_ptr() as usize)
            .filter(|at| at + s.len() <= read.len())
    };
    let mut head = Head {
        len,
        method,
        target: (at(target.as_bytes())?, target.len()),
        headers: [(0, 0, 0, 0); MAX_HEADERS],
        count: request.headers.len(),
        body: 0,
        close: false,
    };
    let mut length = None;
    for (line, slot) in request.headers.iter().zip(&mut head.headers) {
        let (name, value) = (line.name, line.value);
        *slot = (at(name.as_bytes())?, name.len(), at(value)?, value.len());
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("content-length") {
            if length.is_some() {
                return None;
            }
            length = Some(decimal(value)?);
        } else if is("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    return None;
                }
            }
        } else if is("transfer-encoding") || is("expect") || is("upgrade") || is("te") {
            return None;
        }
    }
    head.body = length.unwrap_or(0);
    (head.body <= MAX_BODY).then_some(Some(head))
}

/// A `Content-Length` value: digits only, as hyper requires.
fn decimal(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The request `head` describes, its parts slices of `message`.
fn build(message: &Bytes, head: &Head) -> Option<Request<RequestBody>> {
    let (at, len) = head.target;
    let uri = Uri::from_maybe_shared(message.slice(at..at + len)).ok()?;
    let mut headers = HeaderMap::with_capacity(head.count);
    for &(name_at, name_len, value_at, value_len) in &head.headers[..head.count] {
        let name = HeaderName::from_bytes(&message[name_at..name_at + name_len]).ok()?;
        let value =
            HeaderValue::from_maybe_shared(message.slice(value_at..value_at + value_len)).ok()?;
        headers.append(name, value);
    }
    let body = Full::new(message.slice(head.len..));
    let mut request = Request::new(RequestBody::Right(body));
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// How a response's body is framed.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// No body (204, 304).
    None,
    /// This long, as its `content-length` says.
    Length(u64),
    Chunked,
}

/// Write `response` to `io`, through `out` (empty before, and after
/// unless it fails: the connection then closes).
async fn respond<I, B>(
    io: &mut I,
    out: &mut BytesMut,
    response: Response<B>,
    close: bool,
) -> io::Result<()>
where
    I: AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let framing = head(out, status, &parts.headers, body.size_hint().exact(), close);
    if framing != Framing::None {
        write_body(io, out, body, framing).await?;
    }
    flush(io, out).await
}

/// The response head, into `out`; how its body is framed.
fn head(
    out: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    length: Option<u64>,
    close: bool,
) -> Framing {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.put_u8(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let mut framing = if bodiless {
        Framing::None
    } else {
        Framing::Chunked
    };
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            // One the handler set itself, if it is a length.
            match value.to_str().ok().and_then(|v| v.parse().ok()) {
                Some(length) if !bodiless && framing == Framing::Chunked => {
                    framing = Framing::Length(length);
                }
                _ => continue,
            }
        } else if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if framing == Framing::Chunked {
        match length {
            Some(length) => {
                let mut digits = itoa::Buffer::new();
                line(out, b"content-length", digits.format(length).as_bytes());
                framing = Framing::Length(length);
            }
            None => line(out, b"transfer-encoding", b"chunked"),
        }
    }
    if close {
        line(out, b"connection", b"close");
    }
    if !headers.contains_key(header::DATE) {
        DATE.with_borrow_mut(|date| line(out, b"date", date.now()));
    }
    out.extend_from_slice(b"\r\n");
    framing
}

fn line(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The body's frames, behind the head in `out`: copied while `out` stays
/// within [`MAX_FRAME`], written straight from the frame beyond; `out` is
/// flushed whenever the body has no frame ready. A body longer or shorter
/// than its `content-length` is an error (the connection then closes, as
/// hyper closes it).
async fn write_body<I, B>(
    io: &mut I,
    out: &mut BytesMut,
    body: B,
    framing: Framing,
) -> io::Result<()>
where
    I: AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let failed = |e: B::Error| io::Error::other(e.into());
    let mut sent = 0u64;
    loop {
        let mut next = body
            .frame()
            .now_or_never()
            .map(|frame| frame.map(|frame| frame.map_err(failed)));
        if next.is_none() {
            flush(io, out).await?;
            next = Some(body.frame().await.map(|frame| frame.map_err(failed)));
        }
        let Some(Some(frame)) = next else { break };
        let frame = frame?;
        // Trailers are dropped: no HTTP/1 route sends any.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if matches!(framing, Framing::Length(length) if sent > length) {
            break;
        }
        if framing == Framing::Chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
        }
        if out.len() + data.len() <= MAX_FRAME {
            out.extend_from_slice(&data);
        } else {
            flush(io, out).await?;
            io.write_all(&data).await?;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(length) if sent != length => {
            return Err(io::Error::other(
                "the body's length differs from its content-length",
            ))
        }
        _ => {}
    }
    Ok(())
}

async fn flush<I: AsyncWrite + Unpin>(io: &mut I, out: &mut BytesMut) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

thread_local! {
    static DATE: std::cell::RefCell<Date> = const {
        std::cell::RefCell::new(Date { second: 0, text: [0; 29] })
    };
}

/// The `date` header's value, formatted once a second per thread (as
/// hyper caches it).
struct Date {
    second: u64,
    text: [u8; 29],
}

impl Date {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text
                .copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
        }
        &self.text
    }
}

/// A connection handed to hyper: what the client sent that was not
/// answered yet, read first, then the connection.
pub(super) struct Replay<I> {
    io: I,
    sent: Bytes,
}

impl<I> Replay<I> {
    fn new(io: I, sent: BytesMut) -> Replay<I> {
        Replay {
            io,
            sent: sent.freeze(),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.sent.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.sent.len().min(buf.remaining());
        buf.put_slice(&self.sent.split_to(n));
        if self.sent.is_empty() {
            // Let go of the read buffer it was cut from.
            self.sent = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(head: &str) -> bool {
        matches!(scan(head.as_bytes()), Some(Some(_)))
    }

    #[test]
    fn what_is_simple() {
        assert!(simple("GET /a HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(simple("GET /a HTTP/1.1\r\nx-empty:\r\nx-blank:  \r\n\r\n"));
        assert!(simple(
            "PUT /a HTTP/1.1\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
        ));
        assert!(matches!(scan(b"GET /a HTTP/1.1\r\nhost:"), Some(None)));
        for not in [
            "GET /a HTTP/1.0\r\n\r\n",
            "HEAD /a HTTP/1.1\r\n\r\n",
            "GET http://x/a HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST /a HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
            "POST /a HTTP/1.1\r\ncontent-length: +1\r\n\r\n",
            "POST /a HTTP/1.1\r\ncontent-length: 65537\r\n\r\n",
            "POST /a HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            "GET /a HTTP/1.1\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n",
        ] {
            assert!(scan(not.as_bytes()).is_none(), "{not:?}");
        }
    }
}
