//! The `infercache` binary: parse flags, set up logging, bind, run. The
//! server, its reload loop included, is the library's `server::run`; this
//! file only turns signals into its shutdown future and reload stream.

use clap::{Parser, Subcommand};
use futures::{Stream, StreamExt};
use infercache::{
    config::{Listen, LogFormat},
    server::Source,
    Config, ServeArgs,
};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "A memoizing cache server for machine-learning model results"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API until SIGTERM or Ctrl-C; SIGHUP reloads the config.
    Serve(Box<ServeArgs>),
    /// Replay a JSONL file of requests against a running server to fill
    /// its cache. Lines: {"kv": {"key", "value", "content_type"?, "ttl"?}},
    /// {"infer": {"model", "request"}}, {"embeddings": {...}}.
    Warm(infercache::warm::WarmArgs),
}

/// The log filter when `RUST_LOG` is unset. ONNX Runtime logs about 290
/// INFO lines per model load (session options, graph passes, arenas);
/// its warnings and errors still show.
const DEFAULT_LOG: &str = "info,ort=warn";

/// mimalloc instead of the system allocator: every request allocates and
/// frees a few small blocks (ARCHITECTURE.md §1, "The hot path").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let command = Cli::parse().command;
    let format = match &command {
        Command::Serve(args) => args.log_format,
        Command::Warm(_) => None,
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr);
    match format.unwrap_or(LogFormat::Text) {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().init(),
    }
    let args = match command {
        Command::Serve(args) => *args,
        Command::Warm(args) => return warm(args),
    };
    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    match runtime.block_on(serve(config, args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Bind where `config` says and run until SIGTERM or Ctrl-C, re-reading
/// `args` on every SIGHUP.
async fn serve(config: Config, args: ServeArgs) -> Result<(), String> {
    tracing::info!(?config, "starting");
    let listen = config.listen.clone();
    let source = Source::reloading(config, args, hangups());
    let shutdown = shutdown_signal();
    match listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!("listening on http://{local}");
            infercache::run(listener, source, shutdown)
                .await
                .map_err(|e| e.to_string())
        }
        Listen::Unix(path) => {
            let listener = infercache::bind_unix(&path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            tracing::info!("listening on unix:{}", path.display());
            let served = infercache::run(listener, source, shutdown).await;
            let _ = std::fs::remove_file(&path);
            served.map_err(|e| e.to_string())
        }
    }
}

/// One item per SIGHUP (none if the handler cannot be installed).
fn hangups() -> impl Stream<Item = ()> {
    match signal(SignalKind::hangup()) {
        Ok(hangups) => futures::stream::unfold(hangups, |mut hangups| async move {
            hangups.recv().await.map(|()| ((), hangups))
        })
        .left_stream(),
        Err(e) => {
            tracing::error!("cannot install the SIGHUP handler; live reload is off: {e}");
            futures::stream::pending().right_stream()
        }
    }
}

fn warm(args: infercache::warm::WarmArgs) -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    match runtime.block_on(infercache::warm::run(args)) {
        Ok(summary) => {
            println!("{summary}");
            if summary.failed == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed at once, not
/// when the future is first polled: a signal sent as soon as the server
/// says where it listens still shuts it down cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let handler = |kind| signal(kind).expect("cannot install the SIGTERM/SIGINT handlers");
    let (mut term, mut interrupt) = (
        handler(SignalKind::terminate()),
        handler(SignalKind::interrupt()),
    );
    async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutdown requested");
    }
}
