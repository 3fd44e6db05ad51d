//! The `azimds` binary: command-line parsing, logging, sockets and signals. Everything else is
//! in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};

use azimds::cli::{self, ConnectArgs, EventsCommand, KeysCommand, VmCommand};
use azimds::config::{ControlAddress, ServeArgs, Settings};
use azimds::control::token::ControlToken;
use azimds::control::{self, Access, ControlState};
use azimds::definition::{self, Definitions, Syntax};
use azimds::guest::{self, GuestPlane};
use azimds::identity::Issuer;
use azimds::identity::keys::FileKeyStore;
use azimds::maintenance::Maintenance;
use azimds::registry::Registry;
use azimds::snapshot::CallerMode;
use azimds::store::Store;

/// The store's file inside the data directory.
const STORE_FILE: &str = "azimds.redb";

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
    /// Manage managed-identity token signing keys on a running server.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a running server's state: VMs, caller mode, refused callers, listeners.
    Status {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_logging();
    match cli.command {
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                // `{:#}` prints the whole context chain on one line; definition errors carry
                // their own multi-line list.
                eprintln!("azimds: error: {error:#}");
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
        Command::Status { connect } => {
            client_command(|out| async move { cli::status(&connect, default_data_dir, out).await })
        }
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
    // Parse the file before touching anything, so a bad file stops the start cleanly.
    let file_definitions = match &settings.vms {
        Some(path) => Some(load_definitions(path)?),
        None => None,
    };
    let store_path = settings.data.join(STORE_FILE);
    let store = Store::open(&store_path)
        .with_context(|| format!("cannot open the store {}", store_path.display()))?;
    let started = std::time::Instant::now();
    let (snapshot, warnings) = Registry::load(&store, settings.callers, settings.rate_limit)
        .context("cannot load the VMs in the store")?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    // Token signing keys: made on the first start, reused after (owner-only files).
    let keys_dir = settings.data.join("keys");
    let key_store = FileKeyStore::open(&keys_dir)
        .with_context(|| format!("cannot use the key directory {}", keys_dir.display()))?;
    let issuer = Issuer::open(
        Arc::new(key_store),
        settings.token_lifetime,
        std::time::SystemTime::now(),
    )
    .context("cannot load the token signing keys")?;
    let plane = Arc::new(
        GuestPlane::new(snapshot).with_identity(Arc::new(issuer), settings.identity_limits),
    );
    let registry = Arc::new(Registry::new(store, Arc::clone(&plane)));
    match file_definitions {
        Some(definitions) => {
            for path in definitions.unknown_fields() {
                tracing::warn!(field = %path, "unknown instance field kept; served from the newest api-version only");
            }
            let report = registry.reconcile(definitions).with_context(|| {
                format!(
                    "cannot apply {}",
                    settings.vms.as_deref().unwrap_or(Path::new("")).display()
                )
            })?;
            tracing::info!(
                written = report.written.len(),
                deleted = report.deleted.len(),
                unchanged = report.unchanged,
                "VM definitions file applied"
            );
        }
        None => {
            // Zero-config start: an empty store in single mode serves the demo VM.
            let seeded = settings.callers == CallerMode::Single
                && registry.seed_demo().context("cannot seed the demo VM")?;
            if seeded {
                tracing::info!("empty store: serving the built-in demo VM");
            }
        }
    }
    let events = Maintenance::load(registry.store(), &plane, settings.events.clone())
        .context("cannot load the scheduled events in the store")?;
    import_defined_events(&events, &plane);
    let load_time = started.elapsed();

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(settings, registry, plane, events, load_time))
}

/// Seeds scheduled events listed in VM definitions that the engine does not know yet.
fn import_defined_events(events: &Maintenance, plane: &GuestPlane) {
    for vm in plane.snapshot().vms() {
        let definition = vm.definition();
        let Some(list) = definition
            .scheduled_events
            .as_ref()
            .and_then(|v| v.as_array())
        else {
            continue;
        };
        match events.import(&definition.id, definition.label(), list) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(vm = %definition.id, events = n, "scheduled events imported from the VM definition")
            }
            Err(error) => {
                tracing::error!(vm = %definition.id, %error, "cannot import the VM's scheduled events")
            }
        }
    }
}

async fn run(
    settings: Settings,
    registry: Arc<Registry>,
    plane: Arc<GuestPlane>,
    events: Maintenance,
    load_time: std::time::Duration,
) -> anyhow::Result<()> {
    // Before anything announces readiness: a SIGTERM right after the "listening" line must
    // find the handler installed, not kill the process by default.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let mut guest_listeners = Vec::new();
    for address in &settings.listen {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        guest_listeners.push(listener);
    }
    let addresses: Vec<String> = guest_listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let state = Arc::new(ControlState {
        registry: Arc::clone(&registry),
        ready: AtomicBool::new(false),
        guest_listeners: addresses.clone(),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait_for_stop = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut tasks = tokio::task::JoinSet::new();
    let control_address = start_control(
        &settings,
        Arc::clone(&state),
        &mut tasks,
        stopped.clone(),
        wait_for_stop,
    )
    .await?;
    let mut events = Arc::new(events);
    for handle in events.start(stopped.clone()) {
        tasks.spawn(async move {
            let _ = handle.await;
        });
    }
    plane.attach_events(Arc::clone(&events));
    for listener in guest_listeners {
        tasks.spawn(guest::serve(
            listener,
            Arc::clone(&plane),
            wait_for_stop(stopped.clone()),
        ));
    }
    if let Some(path) = settings.vms.clone() {
        tasks.spawn(watch_definitions(
            path,
            Arc::clone(&registry),
            wait_for_stop(stopped.clone()),
        ));
    }
    state.ready.store(true, Ordering::Release);
    let snapshot = plane.snapshot();
    tracing::info!(
        listen = %addresses.join(","),
        control = %control_address,
        vms = snapshot.vm_count(),
        callers = snapshot.mode().as_str(),
        rate_limit = settings.rate_limit.0,
        data = %settings.data.display(),
        load_ms = load_time.as_millis() as u64,
        "azimds guest plane listening"
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Binds the control listener (TCP with a bearer token, or a unix socket) and serves it.
async fn start_control<W, Fut>(
    settings: &Settings,
    state: Arc<ControlState>,
    tasks: &mut tokio::task::JoinSet<()>,
    stopped: tokio::sync::watch::Receiver<bool>,
    wait_for_stop: W,
) -> anyhow::Result<String>
where
    W: Fn(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    match &settings.control {
        ControlAddress::Tcp(address) => {
            if !address.ip().is_loopback() {
                tracing::warn!(%address, "the control API listens beyond loopback; only its bearer token protects it");
            }
            let token = ControlToken::load_or_create(&settings.data)
                .context("cannot create the control token")?;
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen for the control API on {address}"))?;
            let bound = listener.local_addr()?.to_string();
            let router = control::router(state, Access::Token(Arc::new(token)));
            tasks.spawn(serve_control(listener, router, wait_for_stop(stopped)));
            Ok(bound)
        }
        ControlAddress::Unix(path) => {
            // A stale socket from a previous run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path).ok();
            }
            let listener = tokio::net::UnixListener::bind(path).with_context(|| {
                format!("cannot listen for the control API on {}", path.display())
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
            let router = control::router(state, Access::Socket);
            tasks.spawn(serve_control(listener, router, wait_for_stop(stopped)));
            Ok(format!("unix:{}", path.display()))
        }
    }
}

async fn serve_control<L>(
    listener: L,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%error, "control API stopped");
    }
}

/// Re-applies the definitions file whenever it changes (checked every second). A bad edit is
/// logged and ignored: the previous state keeps being served.
async fn watch_definitions(
    path: PathBuf,
    registry: Arc<Registry>,
    stop: impl std::future::Future<Output = ()>,
) {
    let fingerprint = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = fingerprint(&path);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let current = fingerprint(&path);
        if current == last || current.is_none() {
            continue;
        }
        last = current;
        let definitions = match load_definitions(&path) {
            Ok(definitions) => definitions,
            Err(error) => {
                tracing::error!("{error:#}; keeping the previous VMs");
                continue;
            }
        };
        let writer = Arc::clone(&registry);
        match tokio::task::spawn_blocking(move || writer.reconcile(definitions)).await {
            Ok(Ok(report)) => {
                tracing::info!(
                    file = %path.display(),
                    written = report.written.len(),
                    deleted = report.deleted.len(),
                    unchanged = report.unchanged,
                    "VM definitions file changed and was applied"
                );
                if let Some(events) = registry.plane().events() {
                    import_defined_events(events, registry.plane());
                }
            }
            Ok(Err(error)) => {
                tracing::error!(file = %path.display(), "{error}; keeping the previous VMs")
            }
            Err(error) => tracing::error!(%error, "applying the definitions file failed"),
        }
    }
}

fn load_definitions(path: &Path) -> anyhow::Result<Definitions> {
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
