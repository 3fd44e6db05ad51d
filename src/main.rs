//! The `azimds` binary: command-line parsing, logging, signals and exit codes. The server
//! itself is [`azimds::server::Server`]; the client subcommands are in [`azimds::cli`].

// Also set for every target in Cargo.toml's [lints]; here so that it holds for whoever
// builds this file without that table.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use azimds::cli::{
    self, CaptureArgs, ClockCommand, ConnectArgs, EventsCommand, FaultsCommand, JournalArgs,
    KeysCommand, OvfEnvArgs, ReplayArgs, VmCommand,
};
use azimds::config::{LogFormat, LogSettings, ServeArgs, Settings};
use azimds::server::{Ready, Server, ready};

/// With the `mimalloc` feature the binary allocates through mimalloc (BENCHMARKS.md,
/// "Allocator": what it changes at 100k VMs); the library never picks an allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve(Box<ServeArgs>),
    /// Manage the VMs of a running server through its control API.
    Vm {
        #[command(subcommand)]
        command: VmCommand,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Schedule and drive scheduled events (maintenance, evictions) on a running server.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Manage the signing keys (managed-identity tokens, attested documents) of a running server.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Export a store (VMs, events, provisioning records, sealed keys) as JSON lines, or
    /// import such a file: moving between the embedded store and etcd, or a backup.
    ///
    /// Example: azimds store export --data /var/lib/azimds --kek-file kek -o fleet.jsonl
    Store {
        #[command(subcommand)]
        command: cli::StoreCommand,
    },
    /// Make a running server answer as Azure does when it fails: 410 while updating, 429,
    /// 500 from Entra, slow, stalled, reset or truncated answers.
    ///
    /// Example: azimds faults add --preset imds-updating --duration 70s
    Faults {
        #[command(subcommand)]
        command: FaultsCommand,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a running server's time; with `serve --clock manual`, move it.
    ///
    /// Example: azimds clock advance 10m
    Clock {
        #[command(subcommand)]
        command: Option<ClockCommand>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show what a VM asked: its last guest requests (method, path and query, status,
    /// duration, fault, User-Agent, Metadata header).
    ///
    /// Example: azimds journal web-1 --follow
    Journal {
        #[command(flatten)]
        args: JournalArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Write a VM's provisioning media: its ovf-env.xml, or with --iso a CD image holding it.
    ///
    /// Example: azimds ovf-env web-1 --iso /var/lib/libvirt/images/web-1-ovf.iso
    OvfEnv {
        #[command(flatten)]
        args: OvfEnvArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a running server's state: VMs, caller mode, refused callers, listeners.
    Status {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Record every endpoint and api-version of an IMDS (inside an Azure VM: the real one)
    /// into a fixture pack and a VM definition.
    ///
    /// Example: azimds capture --out my-vm && azimds serve --vms my-vm/vms.yaml
    Capture(CaptureArgs),
    /// Serve a fixture pack written by `azimds capture`, byte for byte.
    ///
    /// Prints one JSON line on stdout when listening: {"guest":["ADDR:PORT"],…}.
    Replay(ReplayArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: azimds completions bash > /usr/share/bash-completion/completions/azimds
    Completions {
        #[arg(value_name = "SHELL")]
        shell: cli::Shell,
    },
    /// Write the man pages (azimds.1 and one per command) into DIR, or print azimds(1).
    Man {
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // Client commands log little; `serve` installs logging once its settings are read.
        let level = std::env::var("AZIMDS_LOG").ok();
        install_logging(&LogSettings {
            format: LogFormat::Text,
            level,
        });
    }
    match cli.command {
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                // Definition errors carry their own multi-line list of problems.
                eprintln!("azimds: error: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Vm { command, connect } => {
            client_command(
                |out| async move { cli::vm(command, &connect, default_data_dir, out).await },
            )
        }
        Command::Events { command, connect } => client_command(|out| async move {
            cli::events(command, &connect, default_data_dir, out).await
        }),
        Command::Keys { command, connect } => client_command(|out| async move {
            cli::keys(command, &connect, default_data_dir, out).await
        }),
        Command::Store { command } => {
            client_command(|out| async move { cli::store(command, default_data_dir, out).await })
        }
        Command::Faults { command, connect } => client_command(|out| async move {
            cli::faults(command, &connect, default_data_dir, out).await
        }),
        Command::Clock { command, connect } => client_command(|out| async move {
            cli::clock(command, &connect, default_data_dir, out).await
        }),
        Command::Journal { args, connect } => client_command(|out| async move {
            cli::journal(args, &connect, default_data_dir, out).await
        }),
        Command::OvfEnv { args, connect } => client_command(|out| async move {
            cli::ovf_env(args, &connect, default_data_dir, out).await
        }),
        Command::Status { connect } => {
            client_command(|out| async move { cli::status(&connect, default_data_dir, out).await })
        }
        Command::Capture(args) => {
            client_command(|out| async move { cli::capture(args, out).await })
        }
        Command::Replay(args) => client_command(|_| replay(args)),
        Command::Completions { shell } => {
            client_command(|out| async move { cli::completions(Cli::command(), shell, out) })
        }
        Command::Man { out: dir } => client_command(|out| async move {
            for page in cli::man_pages(Cli::command(), dir.as_deref(), out)? {
                let _ = writeln!(out, "{}", page.display());
            }
            Ok(())
        }),
    }
}

/// Runs a client subcommand on a small runtime and maps its failure to an exit code.
fn client_command<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(&'static mut dyn std::io::Write) -> Fut,
    Fut: std::future::Future<Output = Result<(), cli::Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("azimds: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let out: &'static mut dyn std::io::Write = Box::leak(Box::new(std::io::stdout()));
    match runtime.block_on(command(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("azimds: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Logging to stderr: `--log-level` (or `AZIMDS_LOG`, filter directives) and `--log-format`.
fn install_logging(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse_lossy(log.level.as_deref().unwrap_or("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let settings = Settings::resolve(args, default_data_dir).map_err(|e| e.to_string())?;
    install_logging(&settings.log);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        // Before the server announces readiness: a SIGTERM right after the "listening" line
        // must find the handler installed, not kill the process by default.
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
        let ready_file = settings.ready_file.clone();
        if let Some(path) = &ready_file {
            ready::remove_stale(path)
                .map_err(|e| format!("cannot remove the old ready file {}: {e}", path.display()))?;
        }
        // The start may wait for etcd (fleet mode): a SIGTERM meanwhile stops it.
        let server = tokio::select! {
            started = Server::start(settings) => started.map_err(|e| e.to_string())?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        };
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        server
            .serve_announcing(shutdown, |ready| announce(ready, ready_file.as_deref()))
            .await
            .map_err(|e| format!("cannot announce readiness: {e}"))?;
        if let Some(path) = &ready_file {
            let _ = ready::remove_stale(path);
        }
        Ok(())
    })
}

/// `azimds replay`: serves until SIGTERM or Ctrl-C; its ready line names the bound addresses.
async fn replay(args: ReplayArgs) -> Result<(), cli::Failure> {
    let dir = args.dir.clone();
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| cli::Failure {
        code: 1,
        message: format!("cannot install the SIGTERM handler: {e}"),
    })?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    let ready = |guest: &[std::net::SocketAddr], responses: usize| {
        use std::io::Write;
        let line = serde_json::json!({
            "guest": guest.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "pack": dir,
            "responses": responses,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
        });
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        Ok(())
    };
    cli::replay(args, ready, shutdown).await
}

/// The `--ready-file`, the ready line on stdout (a closed stdout is not an error: nobody is
/// reading it), and systemd's `READY=1` when started as a `Type=notify` service. The file
/// comes first, so that whoever has read the line finds the file too.
fn announce(ready: &Ready, ready_file: Option<&std::path::Path>) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(path) = ready_file {
        ready
            .write_file(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", ready.to_line()).and_then(|()| stdout.flush());
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        ready::notify_systemd(&socket)?;
    }
    Ok(())
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
