//! The `azimds` binary: command-line parsing, logging, sockets and signals. Everything else is
//! in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use azimds::config::{ServeArgs, Settings};
use azimds::definition::{self, Definitions, Syntax};
use azimds::guest::{self, GuestPlane};
use azimds::snapshot::{CallerMode, Snapshot};

/// An Azure-compatible Instance Metadata Service.
///
/// Serves what Azure VMs read from http://169.254.169.254/metadata/…: instance metadata for
/// every api-version, byte-compatible with real Azure, for development, CI and private clouds.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the metadata service (with no flags: a demo VM on 127.0.0.1:16925).
    ///
    /// Example: azimds serve --listen 169.254.169.254:80 --vms vms.yaml --callers source-address
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_logging();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line; definition errors carry
            // their own multi-line list.
            eprintln!("azimds: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn install_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AZIMDS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args, default_data_dir)?;
    prepare_data_dir(&settings.data)?;
    let definitions = load_definitions(settings.vms.as_deref())?;
    for path in definitions.unknown_fields() {
        tracing::warn!(field = %path, "unknown instance field kept; served from the newest api-version only");
    }
    let vm_count = definitions.vms.len();
    let snapshot = Snapshot::new(definitions.vms, settings.callers, settings.rate_limit)?;
    let plane = Arc::new(GuestPlane::new(snapshot));

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut listeners = Vec::new();
        for address in &settings.listen {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?;
            listeners.push(listener);
        }
        let addresses: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        let source = match &settings.vms {
            Some(path) => path.display().to_string(),
            None => "built-in demo VM".to_string(),
        };
        let callers = match settings.callers {
            CallerMode::Single => "single",
            CallerMode::SourceAddress => "source-address",
        };
        tracing::info!(
            listen = %addresses.join(","),
            vms = vm_count,
            source = %source,
            callers,
            rate_limit = settings.rate_limit.0,
            data = %settings.data.display(),
            "azimds guest plane listening"
        );
        let mut tasks = tokio::task::JoinSet::new();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        for listener in listeners {
            let mut stopped = stopped.clone();
            let plane = Arc::clone(&plane);
            tasks.spawn(guest::serve(listener, plane, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        while tasks.join_next().await.is_some() {}
        anyhow::Ok(())
    })
}

fn load_definitions(path: Option<&Path>) -> anyhow::Result<Definitions> {
    let Some(path) = path else {
        return Ok(definition::demo());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read VM definitions {}", path.display()))?;
    let name = path.display().to_string();
    Ok(definition::parse(
        &text,
        Syntax::from_file_name(&name),
        &name,
    )?)
}

/// `$XDG_STATE_HOME/azimds`, else `~/.local/state/azimds`, else `./azimds-data`.
fn default_data_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("azimds");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/azimds"),
        None => PathBuf::from("azimds-data"),
    }
}

/// Creates the data directory owner-only (it will hold keys), or checks an existing one is a
/// directory we can use.
fn prepare_data_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create data directory {}", path.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
