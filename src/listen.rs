//! The network edge: binding Unix sockets safely, and the accept loop with
//! its limits.
//!
//! The accept loop is hyper-util's auto (HTTP/1 + h2c) builder with guards
//! added, so a sidecar cannot be starved by clients that are slow on purpose
//! (slowloris), silent, idle or too many:
//! - a connection limit: a slot is taken *before* accepting, so excess
//!   clients wait in the kernel's backlog instead of costing memory here;
//! - an idle deadline: a connection with no request in progress for
//!   `header_timeout`, from its start or since its last request, is closed:
//!   gracefully once it has served a request (HTTP/1 then closes at once
//!   unless a response is still being written), at once before. This is
//!   what frees a socket that sends nothing, only part of the HTTP/2
//!   preface (the builder reads the preface to choose a protocol, with no
//!   timeout of its own) or a request head trickled in byte by byte (a
//!   slowloris), and an idle h2c connection (it answers pings, so
//!   keep-alive alone would keep it forever). It is also HTTP/1's header
//!   read timeout: hyper's own (`header_read_timeout`, off) would arm a
//!   timer for every request, a tenth of a KV GET hit's cost
//!   (ARCHITECTURE.md §1, "The hot path");
//! - HTTP/2 keep-alive pings, which close connections to vanished peers,
//!   and a bound on concurrent streams, so the connection limit still bounds
//!   the requests in flight;
//! - a body read timeout, applied per request to every HTTP (not gRPC)
//!   body by `http::App` (`http::timeout`);
//! - HTTP/1 responses copied behind their heads and sent with one `write`,
//!   in bounded frames so the copies cannot grow a connection's buffer
//!   without bound ([`framed`]).
//!
//! Every connection starts in [`express`], which serves simple HTTP/1
//! requests without hyper's per-request machinery; the first request that
//! is not simple (or an HTTP/2 preface) hands the connection to hyper for
//! good, with the bytes not yet answered. The idle deadline, drain and
//! close apply to both alike.
//!
//! Shutdown: stop accepting, ask every connection to finish its in-flight
//! requests and close (idle ones close at once), then wait up to
//! `drain_timeout`; connections still open then are closed.

mod express;
mod framed;

use std::{
    convert::Infallible,
    future::Future,
    io,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::serve::Listener;
use bytes::Bytes;
use futures::{
    future::{BoxFuture, MapOk},
    stream::FuturesUnordered,
    StreamExt, TryFutureExt,
};
use http_body::Body;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{watch, Notify, Semaphore},
};
use tower::{util::Oneshot, ServiceExt};

pub(crate) use self::framed::{Framed, MAX_FRAME};

/// What the accept loop serves: the server's [`crate::http::App`], or an
/// axum router (the connection tests). Called by reference, with no
/// readiness step (both are always ready): per request, a connection only
/// calls it and awaits the answer (ARCHITECTURE.md §1, "The hot path").
pub trait App: Clone + Send + Sync + 'static {
    /// The response body. HTTP/1 copies every data frame into the
    /// connection's write buffer, which keeps its size: frames must be at
    /// most [`MAX_FRAME`] bytes ([`Framed`] cuts longer ones).
    type Body: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
    type Future: Future<Output = Result<Response<Self::Body>, Infallible>> + Send + 'static;

    fn call(&self, request: Request<RequestBody>) -> Self::Future;
}

/// A request's body: hyper's, or one read whole with its head by
/// [`express`].
pub type RequestBody = http_body_util::Either<Incoming, Full<Bytes>>;

impl App for axum::Router {
    type Body = Framed<axum::body::Body>;
    type Future = MapOk<
        Oneshot<axum::Router, Request<RequestBody>>,
        fn(axum::response::Response) -> Response<Self::Body>,
    >;

    fn call(&self, request: Request<RequestBody>) -> Self::Future {
        self.clone()
            .oneshot(request)
            .map_ok(|response| response.map(Framed::new))
    }
}

/// Errors a response body may end with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long shutdown waits for in-flight requests before it closes their
/// connections. A constant: a request that takes longer is stuck (every
/// read and write the server does is bounded well below it), and the
/// process supervisor's own kill timeout (systemd and Kubernetes default to
/// 90 s and 30 s) decides the rest.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Concurrent HTTP/2 streams per connection: generous for gRPC and h2c
/// clients that multiplex, small enough that `max_connections` times this
/// bounds the requests in flight.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// HTTP/2 keep-alive: a ping after this much silence, and the connection
/// is closed when the ping is not answered within the same time.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// How long a connection may sit with no request in progress, and the
    /// deadline for each HTTP/1 request head.
    pub header_timeout: Duration,
    /// How long shutdown waits for in-flight requests before it closes
    /// their connections (30 s in the server).
    pub drain_timeout: Duration,
}

impl Limits {
    /// The limits with the default drain deadline.
    pub fn new(max_connections: usize, header_timeout: Duration) -> Limits {
        Limits {
            max_connections,
            header_timeout,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

/// What the accept loop asks of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Finish in-flight requests, then close.
    Draining,
    /// Close now.
    Closing,
}

/// Serve `app` on `listener` until `shutdown`, then drain connections.
pub async fn serve<L: Listener>(
    mut listener: L,
    app: impl App,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let all_slots = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let (phase, phases) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    let mut builder = Builder::new(TokioExecutor::new());
    // The idle deadline reads heads in time (see the module docs); a
    // response is copied behind its head and written with one `write`, in
    // frames (`framed`).
    builder.http1().header_read_timeout(None).writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let builder = Arc::new(builder);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (io, _) = tokio::select! {
            conn = listener.accept() => conn,
            _ = &mut shutdown => break,
        };
        let (builder, app, phases) = (builder.clone(), app.clone(), phases.clone());
        tokio::spawn(async move {
            connection(&builder, io, app, limits.header_timeout, phases).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = phase.send(Phase::Draining);
    // Every connection holds a slot until it ends.
    let drained = tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all_slots)).await;
    if drained.is_err() {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(
            open,
            deadline = ?limits.drain_timeout,
            "requests still in flight at the drain deadline; closing their connections"
        );
        let _ = phase.send(Phase::Closing);
        let _ = slots.acquire_many(all_slots).await;
    }
}

/// Serve one connection until it ends, goes idle, or the phase says stop.
async fn connection<I, S>(
    builder: &Builder<TokioExecutor>,
    io: I,
    app: S,
    header_timeout: Duration,
    mut phases: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: App,
{
    let activity = Arc::new(Activity::new());
    let mut closing = phases.clone();
    // The signals sit in a `FuturesUnordered`, which polls only the ones
    // whose waker fired: a `select!` over them all would poll every one on
    // each read and write of the connection.
    let mut signals: FuturesUnordered<BoxFuture<'_, Stop>> = FuturesUnordered::new();
    let watched = &*activity;
    signals.push(Box::pin(async move {
        tokio::select! {
            served = idle(watched, header_timeout) => {
                // Before its first request, an HTTP/1 connection would not
                // close gracefully while a head trickles in.
                if served { Stop::Drain } else { Stop::Close }
            }
            _ = phases.wait_for(|p| *p >= Phase::Draining) => Stop::Drain,
        }
    }));
    signals.push(Box::pin(async move {
        let _ = closing.wait_for(|p| *p == Phase::Closing).await;
        Stop::Close
    }));
    // Simple HTTP/1 requests first, without hyper, until one is not.
    let io = {
        let express = express::serve(io, &app, &activity);
        tokio::pin!(express);
        loop {
            tokio::select! {
                biased;
                outcome = express.as_mut() => match outcome {
                    express::Outcome::Closed => return,
                    express::Outcome::Handover(io) => break io,
                },
                Some(stop) = signals.next() => match stop {
                    // A request in progress is answered, then the
                    // connection closes; an idle one closes now.
                    Stop::Drain if activity.active.load(Ordering::Acquire) > 0 => {
                        activity.draining.store(true, Ordering::Release);
                    }
                    Stop::Drain | Stop::Close => return,
                },
            }
        }
    };
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |req: Request<Incoming>| {
            let busy = Busy::start(activity.clone());
            let response = app.call(req.map(RequestBody::Left));
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        }
    });
    let io = TokioIo::new(io);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            // The connection first: it is what woke this task, but for once
            // in a connection's life (and no coin toss per wake-up).
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            Some(stop) = signals.next() => match stop {
                Stop::Drain => conn.as_mut().graceful_shutdown(),
                Stop::Close => return,
            },
        }
    }
}

/// What a connection is told to do besides serving.
enum Stop {
    /// Finish the request in progress, if any, then close (idle, or the
    /// server is draining).
    Drain,
    /// Close now.
    Close,
}

/// What a connection's requests tell its idle deadline: how many are in
/// progress and when the last one ended. A request touches two atomics and
/// the coarse clock, and wakes nobody unless the deadline passed while it
/// ran; the deadline's own timer is reset only when it fires (a
/// notification per request, and a timer per idle period, cost more than
/// the whole KV GET hit path: ARCHITECTURE.md §1, "The hot path").
struct Activity {
    active: AtomicUsize,
    /// When the last request ended, in [`ticks`]; 0 before the first one
    /// ends.
    last_end: AtomicU64,
    /// When the connection started, in [`ticks`].
    started: u64,
    /// Set when the connection was told to drain while [`express`] served
    /// a request: it closes after that request.
    draining: AtomicBool,
    /// Told when the count drops to zero.
    ended: Notify,
}

/// Now, on the kernel's coarse monotonic clock (`coarsetime`): a read of
/// the time the last timer tick left, a few milliseconds old at most; the
/// precise clock costs a tenth of a KV GET hit (ARCHITECTURE.md §1). At
/// least 1, as 0 means "no request ended yet".
fn ticks() -> u64 {
    coarsetime::Instant::now_without_cache_update()
        .as_ticks()
        .max(1)
}

impl Activity {
    fn new() -> Activity {
        Activity {
            active: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            started: ticks(),
            draining: AtomicBool::new(false),
            ended: Notify::new(),
        }
    }

    /// How long the connection has been idle: since the last request ended
    /// (since its start before any).
    fn idle_for(&self) -> Duration {
        let last_end = match self.last_end.load(Ordering::Acquire) {
            0 => self.started,
            at => at,
        };
        coarsetime::Duration::from_ticks(ticks().saturating_sub(last_end)).into()
    }
}

/// Counts a request in progress on its connection while it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Busy {
        activity.active.fetch_add(1, Ordering::AcqRel);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.last_end.fetch_max(ticks(), Ordering::AcqRel);
        if activity.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Without a waiter this only leaves a permit (one atomic).
            activity.ended.notify_one();
        }
    }
}

/// Resolves once no request has been in progress for `timeout`, with
/// whether any request ever was.
async fn idle(activity: &Activity, timeout: Duration) -> bool {
    loop {
        // A stale permit only makes this check once more.
        while activity.active.load(Ordering::Acquire) > 0 {
            activity.ended.notified().await;
        }
        let idle_for = activity.idle_for();
        if idle_for < timeout {
            tokio::time::sleep(timeout - idle_for).await;
            continue;
        }
        if activity.active.load(Ordering::Acquire) == 0 {
            return activity.last_end.load(Ordering::Acquire) > 0;
        }
    }
}

/// Bind a Unix socket at `path` with mode 0660 (owner and group may
/// connect). A stale socket file left by a crashed server is replaced; a
/// socket a live server answers on, or a file that is not a socket, is left
/// alone and reported.
///
/// The socket is bound inside a fresh 0700 directory next to `path`, given
/// its mode there, then renamed into place: it is never reachable with the
/// umask's permissions, and nobody can swap it for a symlink before the
/// chmod (which follows symlinks), because nobody else can enter that
/// directory.
pub fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            tracing::info!(path = %path.display(), "replacing a stale socket file");
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".infercache-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", private.display()),
            )
        })?;
    let staging = private.join("s");
    let bound = bind_private(&staging, path);
    if bound.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    let _ = std::fs::remove_dir(&private);
    bound
}

/// Bind at `staging` (inside a directory only we can enter), chmod, and
/// move it to `path`.
fn bind_private(staging: &Path, path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let listener = tokio::net::UnixListener::bind(staging)?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o660))?;
    std::fs::rename(staging, path)?;
    Ok(listener)
}
