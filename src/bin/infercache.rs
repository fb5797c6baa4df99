//! The `infercache` binary: parse flags, set up logging, bind, run.

use clap::{Parser, Subcommand};
use infercache::{
    config::{Listen, LogFormat},
    Config, ServeArgs,
};
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

async fn serve(config: Config, args: ServeArgs) -> Result<(), String> {
    tracing::info!(?config, "starting");
    let (reload, live) = tokio::sync::watch::channel(std::sync::Arc::new(config.clone()));
    tokio::spawn(reload_on_sighup(reload, args));
    match config.listen.clone() {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!("listening on http://{local}");
            infercache::server::run_live(listener, live, shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Listen::Unix(path) => {
            let listener = infercache::listen::bind_unix(&path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            tracing::info!("listening on unix:{}", path.display());
            let served = infercache::server::run_live(listener, live, shutdown_signal()).await;
            let _ = std::fs::remove_file(&path);
            served.map_err(|e| e.to_string())
        }
    }
}

/// Re-read the configuration on every SIGHUP. An invalid file keeps the
/// current configuration; settings that cannot change live are named.
async fn reload_on_sighup(
    reload: tokio::sync::watch::Sender<std::sync::Arc<Config>>,
    args: ServeArgs,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; live reload is off");
        return;
    };
    while hangups.recv().await.is_some() {
        let current = reload.borrow().clone();
        match current.reloaded(&args) {
            Ok((next, kept)) if kept.is_empty() => {
                tracing::info!("configuration reloaded");
                reload.send_replace(std::sync::Arc::new(next));
            }
            Ok((next, kept)) => {
                tracing::warn!(
                    "configuration reloaded; these cannot change while running and keep their values: {}",
                    kept.join(", ")
                );
                reload.send_replace(std::sync::Arc::new(next));
            }
            Err(e) => tracing::error!("configuration reload failed, keeping the current one: {e}"),
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

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested");
}
