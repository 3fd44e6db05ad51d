//! The whole server, assembled in the library: [`Server::start`] opens the data directory,
//! store and keys, builds the shared state and binds every listener; [`Server::serve`] runs the
//! guest plane, the WireServer companion, the control API, the events timer, hook delivery
//! and the definitions-file watcher until a shutdown future completes. `main.rs` only parses flags, installs logging
//! and maps errors to exit codes; tests and embedders start the same server in-process.

mod data_dir;
mod error;
mod fd_limit;
mod follow;
mod listeners;
mod open;
pub mod ready;
mod recovery;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::{ClockMode, ControlAddress, Settings};
use crate::connections::{Caps, ConnectionPolicy, StallLimits, Tracker};
use crate::control::ControlState;
use crate::definition::Definitions;
use crate::guest;
use crate::maintenance::HookDelivery;
use crate::registry::Registry;
pub use crate::server::data_dir::{ATTESTED_KEYS_DIR, KEYS_DIR, STORE_FILE};
pub use crate::server::error::Error;
use crate::server::listeners::{ControlListener, WireServerListeners};
pub use crate::server::ready::Ready;
use crate::snapshot::CallerMode;
use crate::state::Shared;
use crate::wireserver;

/// What a server is started with besides its [`Settings`].
#[derive(Debug)]
pub struct Options {
    /// Time as both planes see it.
    pub clock: Arc<dyn Clock>,
    /// VMs given as values instead of `settings.vms`'s file (tests, embedding): reconciled at
    /// start exactly as a file's would be, and never watched.
    pub definitions: Option<Definitions>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            clock: Arc::new(SystemClock),
            definitions: None,
        }
    }
}

/// A server with its state loaded and its listeners bound, not yet serving.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    watch_file: bool,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    state: Arc<ControlState>,
    guest: Vec<TcpListener>,
    wireserver: Option<WireServerListeners>,
    control: ControlListener,
    hooks: Option<HookDelivery>,
    guest_policy: ConnectionPolicy,
    guest_connections: Arc<Tracker>,
    load_time: Duration,
    /// Fleet mode: follows the shared store while the server lives.
    _follower: Option<follow::Follower>,
    _key_follower: Option<follow::Follower>,
    _events_follower: Option<follow::Follower>,
}

/// A stalled write (a client that stopped reading its answer) is given up after this.
const WRITE_STALL: Duration = Duration::from_secs(10);

/// The control API: loopback automation and operators, not thousands of VMs.
const CONTROL_POLICY: ConnectionPolicy = ConnectionPolicy {
    caps: Caps {
        total: 64,
        per_caller: 64,
    },
    head_timeout: Duration::from_secs(10),
    stall: StallLimits {
        read: Duration::from_secs(30),
        write: WRITE_STALL,
    },
};

/// The guest plane's connection policy for these settings and descriptor limit.
fn guest_policy(settings: &Settings, fd_limit: u64) -> ConnectionPolicy {
    let limits = settings.connections;
    let total = limits
        .max_total
        .map_or_else(|| fd_limit::guest_connections(fd_limit), |n| n as usize);
    // Per-caller caps isolate VMs from each other; in single mode every caller is the one VM.
    let per_caller = match settings.callers {
        CallerMode::Single => total,
        CallerMode::SourceAddress => limits.max_per_caller as usize,
    };
    ConnectionPolicy {
        caps: Caps { total, per_caller },
        head_timeout: limits.idle_timeout,
        stall: StallLimits {
            read: limits.idle_timeout,
            write: WRITE_STALL,
        },
    }
}

/// The state a server would serve, opened as [`Server::start_with`] opens it but without
/// binding a listener or starting a task: the fuzz targets (feature `fuzzing`) answer guest
/// requests on it with `guest::respond`, in-process.
#[cfg(feature = "fuzzing")]
pub(crate) fn open_state(settings: &Settings, options: Options) -> Result<Arc<Shared>, Error> {
    let prepared = open::prepare(settings, options.definitions)?;
    let store = open::open_store(settings)?;
    open::open(settings, options.clock, prepared, store).map(|opened| opened.shared)
}

impl Server {
    /// Starts a server from `settings`, on the clock they name (`--clock`).
    pub async fn start(settings: Settings) -> Result<Server, Error> {
        let clock: Arc<dyn Clock> = match settings.clock {
            ClockMode::System => Arc::new(SystemClock),
            ClockMode::Manual => Arc::new(ManualClock::new(std::time::SystemTime::now())),
        };
        let options = Options {
            clock,
            definitions: None,
        };
        Server::start_with(settings, options).await
    }

    /// Loads everything the server serves and binds its listeners.
    pub async fn start_with(settings: Settings, options: Options) -> Result<Server, Error> {
        let started = Instant::now();
        let guest_policy = guest_policy(&settings, fd_limit::raise());
        let guest_connections = Tracker::new(guest_policy.caps);
        let watch_file = options.definitions.is_none() && settings.vms.is_some();
        let prepared = open::prepare(&settings, options.definitions)?;
        let store = open::connect(&settings).await?;
        let opened = open::open(&settings, options.clock, prepared, store)?;
        let load_time = started.elapsed();
        let guest = listeners::bind_guests(&settings.listen).await?;
        let wireserver = listeners::bind_wireserver(settings.wireserver).await?;
        let control = listeners::bind_control(&settings.control, &settings.data).await?;
        let state = Arc::new(ControlState {
            shared: Arc::clone(&opened.shared),
            registry: Arc::clone(&opened.registry),
            ready: AtomicBool::new(false),
            guest_connections: Arc::clone(&guest_connections),
            store: Arc::clone(&opened.store),
            writable: opened.writable.clone(),
            guest_listeners: local_addresses(&guest)
                .iter()
                .map(SocketAddr::to_string)
                .collect(),
        });
        Ok(Server {
            settings,
            watch_file,
            shared: opened.shared,
            registry: opened.registry,
            state,
            guest,
            wireserver,
            control,
            hooks: opened.hooks,
            guest_policy,
            guest_connections,
            load_time,
            _follower: opened.follower,
            _key_follower: opened.key_follower,
            _events_follower: opened.events_follower,
        })
    }

    /// The bound guest addresses (port 0 resolved), in `--listen` order.
    pub fn guest_addresses(&self) -> Vec<SocketAddr> {
        local_addresses(&self.guest)
    }

    /// The bound control address: `host:port`, or `unix:/path`.
    pub fn control_address(&self) -> String {
        self.control.address()
    }

    /// The bound WireServer and Host GA Plugin addresses, when they are served.
    pub fn wireserver_addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        let listeners = self.wireserver.as_ref()?;
        Some((
            listeners.wireserver.local_addr().ok()?,
            listeners.host_plugin.local_addr().ok()?,
        ))
    }

    /// The state both planes share (snapshot, clock, issuer, events engine).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The VM write path.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until `shutdown` completes, then stops every task and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let announced = self.serve_announcing(shutdown, |_| Ok(())).await;
        announced.expect("announcing nothing cannot fail");
    }

    /// [`Server::serve`], calling `announce` once when the server is ready: every listener
    /// accepts and the control API answers `/readyz` with 200. If `announce` fails, the
    /// server stops at once and returns its error.
    pub async fn serve_announcing(
        self,
        shutdown: impl Future<Output = ()>,
        announce: impl FnOnce(&Ready) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let (stop, stopped) = signal::channel(false);
        let on_stop = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let guest: Vec<String> = self
            .guest_addresses()
            .iter()
            .map(SocketAddr::to_string)
            .collect();
        let listen = guest.join(",");
        let control = self.control_address();
        let wireserver = self.wireserver_addresses();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(
            self.control
                .serve(Arc::clone(&self.state), CONTROL_POLICY, on_stop()),
        );
        if !self.shared.clock().is_manual() {
            tasks.spawn(Arc::clone(self.shared.events()).run_timer(on_stop()));
            tasks.spawn(renew_attested(Arc::clone(&self.shared), on_stop()));
        }
        if let Some(hooks) = self.hooks {
            tasks.spawn(hooks.run(on_stop()));
        }
        tasks.spawn(recovery::watch_store(
            Arc::clone(&self.state.store),
            on_stop(),
        ));
        for listener in self.guest {
            tasks.spawn(guest::serve(
                listener,
                Arc::clone(&self.shared),
                Arc::clone(&self.guest_connections),
                self.guest_policy,
                on_stop(),
            ));
        }
        if let Some(listeners) = self.wireserver {
            for (service, listener) in [
                (wireserver::Service::WireServer, listeners.wireserver),
                (wireserver::Service::HostPlugin, listeners.host_plugin),
            ] {
                // The same caps as the IMDS listeners: one VM's agents share its budget.
                tasks.spawn(wireserver::serve(
                    service,
                    listener,
                    Arc::clone(&self.shared),
                    Arc::clone(&self.guest_connections),
                    self.guest_policy,
                    on_stop(),
                ));
            }
        }
        if let (true, Some(path)) = (self.watch_file, self.settings.vms.clone()) {
            let registry = Arc::clone(&self.registry);
            tasks.spawn(watch::watch_definitions(path, registry, on_stop()));
        }
        self.state.ready.store(true, Ordering::Release);
        let snapshot = self.shared.snapshot();
        tracing::info!(
            listen = %listen,
            control = %control,
            vms = snapshot.vm_count(),
            callers = snapshot.mode().as_str(),
            rate_limit = self.settings.rate_limit.0,
            clock = if self.shared.clock().is_manual() { "manual" } else { "system" },
            max_connections = self.guest_policy.caps.total,
            max_connections_per_caller = self.guest_policy.caps.per_caller,
            wireserver = %wireserver.map_or_else(|| "off".to_string(), |(w, _)| w.to_string()),
            hgap = %wireserver.map_or_else(|| "off".to_string(), |(_, h)| h.to_string()),
            data = %self.settings.data.display(),
            load_ms = self.load_time.as_millis() as u64,
            "azimds guest plane listening"
        );
        let ready = Ready {
            guest,
            control,
            token_file: matches!(self.settings.control, ControlAddress::Tcp(_))
                .then(|| crate::control::token::path(&self.settings.data)),
            vms: snapshot.vm_count(),
            callers: snapshot.mode().as_str().to_string(),
            data: self.settings.data.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        drop(snapshot);
        let announced = announce(&ready);
        if announced.is_ok() {
            shutdown.await;
            tracing::info!("shutting down");
        }
        let _ = stop.send(true);
        while tasks.join_next().await.is_some() {}
        announced
    }

    /// Serves on the current runtime in the background until [`Running::stop`] or drop.
    pub fn spawn(self) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let guest = self.guest_addresses();
        let control = self.control_address();
        let wireserver = self.wireserver_addresses();
        let shared = Arc::clone(&self.shared);
        let registry = Arc::clone(&self.registry);
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(self.serve(async move {
            let _ = stopped.await;
        }));
        Running {
            guest,
            control,
            wireserver,
            shared,
            registry,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A server serving in the background; dropping it stops the server.
#[derive(Debug)]
pub struct Running {
    guest: Vec<SocketAddr>,
    control: String,
    wireserver: Option<(SocketAddr, SocketAddr)>,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    state: Arc<ControlState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn guest_addresses(&self) -> &[SocketAddr] {
        &self.guest
    }

    pub fn control_address(&self) -> &str {
        &self.control
    }

    /// The WireServer and Host GA Plugin addresses, when they are served.
    pub fn wireserver_addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.wireserver
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// What the control API serves from (its readiness flag included).
    pub fn control_state(&self) -> &Arc<ControlState> {
        &self.state
    }

    /// Stops serving and waits until every task has ended.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// How often the attested signer checks whether its leaves are near their end.
const ATTESTED_RENEWAL_CHECK: Duration = Duration::from_secs(24 * 3600);

/// Once a day, rotates the attested leaves when they end within 30 days (a server left
/// running for a year keeps signing with valid certificates). Off the async workers: a
/// rotation makes a key and writes the key store.
async fn renew_attested(shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(ATTESTED_RENEWAL_CHECK) => {}
        }
        let signer = Arc::clone(shared.attested());
        let now = shared.clock().now();
        match tokio::task::spawn_blocking(move || signer.renew_if_due(now)).await {
            Ok(Ok(true)) => tracing::info!("attested signing certificates renewed"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "renewing the attested signing certificates failed")
            }
            Err(_) => tracing::error!("the attested renewal task failed"),
        }
    }
}

fn local_addresses(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect()
}
