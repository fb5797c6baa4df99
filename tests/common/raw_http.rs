//! A raw HTTP/1.1 client: exact bytes in, status/headers/body out, over a
//! loopback port or a Unix socket.
//!
//! Paths, header bytes and framing are exactly what the test says (reqwest
//! would normalise `.`/`%2E` path segments and refuse some header bytes),
//! and a slow client can send half a request and wait for the server to
//! close on it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpStream, UnixStream},
};

/// Longest any single request may take before [`http`] calls it a hang.
pub const HANG: Duration = Duration::from_secs(30);

/// Where a request goes: `host:port`, or a Unix socket's path.
#[derive(Clone, Copy, Debug)]
pub enum Peer<'a> {
    Tcp(&'a str),
    Unix(&'a Path),
}

impl Peer<'_> {
    /// The `host` header's value.
    pub fn host(&self) -> &str {
        match self {
            Peer::Tcp(addr) => addr,
            Peer::Unix(_) => "localhost",
        }
    }
}

impl<'a> From<&'a str> for Peer<'a> {
    fn from(addr: &'a str) -> Self {
        Peer::Tcp(addr)
    }
}

impl<'a> From<&'a Path> for Peer<'a> {
    fn from(path: &'a Path) -> Self {
        Peer::Unix(path)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Framing {
    /// `Content-Length` of the body sent.
    Length,
    /// `Content-Length: N` whatever is actually sent.
    Declared(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Names lower-cased, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// De-chunked; empty for `HEAD`.
    pub body: Vec<u8>,
    /// From before connecting until the server closed.
    pub elapsed: Duration,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The body as text, cut short for messages.
    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(400).collect()
    }

    /// Parse everything a server sent in answer to `method`.
    pub fn parse(raw: &[u8], method: &str, elapsed: Duration) -> std::io::Result<Reply> {
        let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
            std::io::Error::other(format!(
                "no response head in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
        let mut lines = raw[..end].split(|b| *b == b'\n');
        let status_line = String::from_utf8_lossy(lines.next().unwrap()).to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, Vec<u8>)> = lines
            .filter_map(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                let colon = l.iter().position(|b| *b == b':')?;
                let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
                let mut value = &l[colon + 1..];
                while let [b' ' | b'\t', rest @ ..] = value {
                    value = rest;
                }
                Some((name, value.to_vec()))
            })
            .collect();
        let rest = &raw[end + 4..];
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
            elapsed,
        };
        if method == "HEAD" {
            return Ok(reply);
        }
        reply.body = if reply
            .header_str("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            dechunk(rest)
        } else if let Some(len) = reply
            .header_str("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            rest[..len.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        Ok(reply)
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request's bytes: the request line, `host` and `connection: close`,
/// `headers` as given, then `body` framed as `framing` says.
pub fn request(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    framing: Framing,
) -> Vec<u8> {
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length => req.extend(format!("content-length: {}\r\n\r\n", body.len()).bytes()),
        Framing::Declared(n) => req.extend(format!("content-length: {n}\r\n\r\n").bytes()),
        Framing::Chunked => req.extend(b"transfer-encoding: chunked\r\n\r\n"),
    }
    match framing {
        Framing::Chunked => {
            for chunk in body.chunks(64 << 10) {
                req.extend(format!("{:x}\r\n", chunk.len()).bytes());
                req.extend_from_slice(chunk);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"0\r\n\r\n");
        }
        _ => req.extend_from_slice(body),
    }
    req
}

/// Write `req` while reading: a server may answer (413) before the body is
/// in. The write half stays open until the answer is read (a half-close
/// could cancel the request). Returns all that came until the server
/// closed.
async fn exchange<S>(stream: S, req: Vec<u8>) -> std::io::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&req).await;
        wr
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after an early answer: keep what arrived.
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    drop(writer.await);
    Ok(raw)
}

/// `req` (see [`request`]) on a new connection to `peer`: the reply to
/// `method`, timed from before connecting.
pub async fn send(peer: Peer<'_>, method: &str, req: Vec<u8>) -> std::io::Result<Reply> {
    let started = Instant::now();
    let raw = match peer {
        Peer::Tcp(addr) => exchange(TcpStream::connect(addr).await?, req).await?,
        Peer::Unix(path) => exchange(UnixStream::connect(path).await?, req).await?,
    };
    Reply::parse(&raw, method, started.elapsed())
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(rest, b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap().trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let stop = (start + size).min(rest.len());
        out.extend_from_slice(&rest[start..stop]);
        rest = &rest[(stop + 2).min(rest.len())..];
    }
    out
}

/// One request on a new connection to `peer`; panics (failing the test
/// or the proptest case) on a hang or a dropped connection without an
/// answer.
pub async fn http<'a>(
    peer: impl Into<Peer<'a>>,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    framing: Framing,
) -> Reply {
    let peer = peer.into();
    let req = request(peer.host(), method, target, headers, body, framing);
    match tokio::time::timeout(HANG, send(peer, method, req)).await {
        Err(_) => panic!("{method} {target}: no answer within {HANG:?} (hang)"),
        Ok(Err(e)) => panic!("{method} {target}: no HTTP answer: {e}"),
        Ok(Ok(r)) => r,
    }
}

/// A slow client: connect to `addr` (`host:port`), send `partial` and
/// keep the connection open.
pub async fn send_partial(addr: &str, partial: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(partial).await.unwrap();
    stream
}

/// Everything the server sends on `stream` until it closes; panics if it
/// does not close within `limit`.
pub async fn until_closed(mut stream: impl AsyncRead + Unpin, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut out))
        .await
        .expect("the server closed the connection")
        .ok();
    out
}
