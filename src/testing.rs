//! A whole azimds in-process, for tests (cargo feature `testing`).
//!
//! [`TestServer::start`] serves the demo VM; [`TestServer::builder`] takes VMs as values (the
//! entries of a definitions file, as `serde_json::Value`s), a caller mode, limits and a start
//! time. The server listens on ephemeral loopback ports (`127.0.0.1:0`, so tests run in
//! parallel without port races), keeps its state in a temporary directory removed on drop, and
//! runs on a [`ManualClock`]: time moves only when the test moves it, and
//! [`TestServer::advance`] applies what became due (scheduled events start and complete).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use azimds::testing::TestServer;
//! use serde_json::json;
//!
//! let imds = TestServer::builder()
//!     .instance(json!({"compute": {"name": "web-1", "location": "westeurope"}}))
//!     .start()
//!     .await
//!     .expect("the server starts");
//! // Point the code under test at imds.url() instead of http://169.254.169.254 …
//! let url = format!("{}/metadata/instance/compute/name?api-version=2021-02-01&format=text", imds.url());
//! assert!(url.starts_with("http://127.0.0.1:"));
//! imds.stop().await;
//! # }
//! ```
//!
//! Dropping a [`TestServer`] stops it too; [`TestServer::stop`] also waits until every task has
//! ended. It needs a Tokio runtime with the `time`, `net` and `rt` drivers (`#[tokio::test]`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::{
    AttestedSettings, ClockMode, ConnectionSettings, ControlAddress, LogSettings, Settings,
};
use crate::control::token::ControlToken;
use crate::definition::{self, Definitions};
use crate::identity::limits::IdentityLimits;
use crate::identity::token::DEFAULT_LIFETIME;
use crate::maintenance::MaintenanceConfig;
use crate::server::{Options, Running, Server};
use crate::snapshot::CallerMode;
use crate::store::StoreLocation;
use crate::telemetry::TelemetrySettings;
use crate::throttle::RateLimit;

/// Why a test server did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The VMs given are not valid definitions (every problem, with its path).
    #[error("{0}")]
    Definitions(#[from] definition::DefinitionError),
    /// The server could not start (data directory, store, listeners).
    #[error("{0}")]
    Server(#[from] crate::server::Error),
    /// The temporary data directory could not be made.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The VMs a test server starts with.
#[derive(Clone, Debug)]
enum Vms {
    Demo,
    Entries(Vec<Value>),
    Text(String),
}

/// How to start a [`TestServer`]. Every setting has a default for tests: the demo VM, caller
/// mode `single`, no throttling (neither Azure's 5 requests per second nor the identity
/// limits), a manual clock at the current time.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start`"]
pub struct Builder {
    vms: Vms,
    callers: CallerMode,
    rate_limit: u32,
    identity_limits: IdentityLimits,
    events: MaintenanceConfig,
    clock: ClockChoice,
    token_lifetime: u64,
    data: Option<PathBuf>,
}

#[derive(Clone, Debug)]
enum ClockChoice {
    Manual(SystemTime),
    System,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            vms: Vms::Demo,
            callers: CallerMode::Single,
            rate_limit: 0,
            identity_limits: IdentityLimits {
                per_second: 0,
                concurrent: 0,
            },
            events: MaintenanceConfig::default(),
            clock: ClockChoice::Manual(SystemTime::now()),
            token_lifetime: DEFAULT_LIFETIME,
            data: None,
        }
    }
}

impl Builder {
    /// Adds a VM: one entry of a definitions file (`{"id": …, "callers": […], "instance": {…},
    /// "identities": {…}, "scheduledEvents": […]}`; README "VM definition file"). The first
    /// call replaces the demo VM.
    pub fn vm(mut self, entry: Value) -> Builder {
        match &mut self.vms {
            Vms::Entries(entries) => entries.push(entry),
            _ => self.vms = Vms::Entries(vec![entry]),
        }
        self
    }

    /// Adds a VM whose `instance` document is `instance` (as Azure returns it, any version).
    pub fn instance(self, instance: Value) -> Builder {
        self.vm(serde_json::json!({ "instance": instance }))
    }

    /// Serves the VMs of a definitions file's text (JSON or YAML), instead of any added so far.
    pub fn definitions(mut self, text: &str) -> Builder {
        self.vms = Vms::Text(text.to_string());
        self
    }

    /// Starts with no VM at all (the control API adds them).
    pub fn no_vms(mut self) -> Builder {
        self.vms = Vms::Entries(Vec::new());
        self
    }

    /// How callers are matched to VMs (`source-address` needs each VM's `callers`).
    pub fn callers(mut self, mode: CallerMode) -> Builder {
        self.callers = mode;
        self
    }

    /// Requests per second per VM before 429 (Azure: 5); 0, the default here, turns it off.
    pub fn rate_limit(mut self, per_second: u32) -> Builder {
        self.rate_limit = per_second;
        self
    }

    /// The managed-identity limits (Azure's: `IdentityLimits::default()`, 20 per second and 5
    /// concurrent; default here: off).
    pub fn identity_limits(mut self, limits: IdentityLimits) -> Builder {
        self.identity_limits = limits;
        self
    }

    /// Scheduled-events settings (notices, completion, hook).
    pub fn events(mut self, config: MaintenanceConfig) -> Builder {
        self.events = config;
        self
    }

    /// The manual clock starts at `start` (default: now) and moves only by
    /// [`TestServer::advance`] or [`TestServer::clock`].
    pub fn clock_at(mut self, start: SystemTime) -> Builder {
        self.clock = ClockChoice::Manual(start);
        self
    }

    /// Real time instead of a manual clock: events run on their own timer.
    pub fn system_clock(mut self) -> Builder {
        self.clock = ClockChoice::System;
        self
    }

    /// Managed-identity token lifetime in seconds (default 24 h).
    pub fn token_lifetime(mut self, seconds: u64) -> Builder {
        self.token_lifetime = seconds;
        self
    }

    /// Keeps state in `dir` (kept after the server stops) instead of a temporary directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.data = Some(dir.into());
        self
    }

    /// The settings a server started from this builder runs with, its state in `data`.
    pub(crate) fn settings(&self, data: PathBuf) -> Settings {
        Settings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            vms: None,
            data,
            store: StoreLocation::Embedded,
            host_name: "localhost".into(),
            rate_limit: RateLimit(self.rate_limit),
            callers: self.callers,
            control: ControlAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            workers: None,
            token_lifetime: self.token_lifetime,
            identity_limits: self.identity_limits,
            events: self.events.clone(),
            connections: ConnectionSettings::default(),
            wireserver: None,
            attested: AttestedSettings::default(),
            clock: match self.clock {
                ClockChoice::Manual(_) => ClockMode::Manual,
                ClockChoice::System => ClockMode::System,
            },
            faults: Vec::new(),
            telemetry: TelemetrySettings::default(),
            log: LogSettings::default(),
            ready_file: None,
        }
    }

    /// Starts the server on ephemeral loopback ports and serves it in the background.
    pub async fn start(self) -> Result<TestServer, Error> {
        let definitions = match &self.vms {
            Vms::Demo => None,
            // A file must define a VM; a test may start empty and add them through the API.
            Vms::Entries(vms) if vms.is_empty() => Some(Definitions { vms: Vec::new() }),
            Vms::Entries(vms) => Some(definition::parse(
                &serde_json::json!({ "vms": vms }).to_string(),
                Some(definition::Syntax::Json),
                "test VMs",
            )?),
            Vms::Text(text) => Some(definition::parse(text, None, "test definitions")?),
        };
        let temp = match &self.data {
            Some(_) => None,
            None => Some(TempDir::new().map_err(|(path, source)| Error::DataDir { path, source })?),
        };
        let data = match (&self.data, &temp) {
            (Some(dir), _) => dir.clone(),
            (None, Some(temp)) => temp.path().join("data"),
            (None, None) => unreachable!("a temporary directory is made when none is given"),
        };
        let settings = self.settings(data.clone());
        let (clock, manual): (Arc<dyn Clock>, _) = match self.clock {
            ClockChoice::Manual(start) => {
                let clock = Arc::new(ManualClock::new(start));
                (clock.clone(), Some(clock))
            }
            ClockChoice::System => (Arc::new(SystemClock), None),
        };
        let options = Options { clock, definitions };
        let running = Server::start_with(settings, options).await?.spawn();
        let token = ControlToken::read(&data)
            .map_err(|source| Error::DataDir {
                path: data.clone(),
                source,
            })?
            .expose()
            .to_string();
        Ok(TestServer {
            running,
            clock: manual,
            token,
            data,
            _temp: temp,
        })
    }
}

/// A whole azimds serving in the background on ephemeral loopback ports; stopped on drop.
#[derive(Debug)]
pub struct TestServer {
    running: Running,
    clock: Option<Arc<ManualClock>>,
    token: String,
    data: PathBuf,
    // Dropped after `running` (fields drop in order), so the store closes first.
    _temp: Option<TempDir>,
}

impl TestServer {
    /// A server with the built-in demo VM and the defaults of [`Builder`].
    pub async fn start() -> Result<TestServer, Error> {
        Builder::default().start().await
    }

    /// Settings for a server with other VMs, limits or clock.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The guest plane's base URL, `http://127.0.0.1:PORT`: what code under test uses in
    /// place of `http://169.254.169.254`.
    pub fn url(&self) -> String {
        format!("http://{}", self.guest_address())
    }

    /// The guest listener's address.
    pub fn guest_address(&self) -> SocketAddr {
        self.running.guest_addresses()[0]
    }

    /// The control API's base URL (`http://127.0.0.1:PORT`); it also serves the JWKS that
    /// verifies managed-identity tokens (`/common/discovery/keys`).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_address())
    }

    /// The control listener's address.
    pub fn control_address(&self) -> SocketAddr {
        self.running
            .control_address()
            .parse()
            .expect("a test server's control listener is TCP")
    }

    /// The control API's bearer token.
    pub fn control_token(&self) -> &str {
        &self.token
    }

    /// The data directory (a temporary one unless [`Builder::data_dir`] chose it).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The manual clock (none with [`Builder::system_clock`]).
    pub fn clock(&self) -> Option<&Arc<ManualClock>> {
        self.clock.as_ref()
    }

    /// Moves the manual clock by `by` and applies what became due (events start, complete);
    /// returns how many event transitions happened.
    ///
    /// # Panics
    /// With [`Builder::system_clock`] (real time cannot be moved), or if the store fails.
    pub fn advance(&self, by: Duration) -> usize {
        let clock = self
            .clock
            .as_ref()
            .expect("advance needs the manual clock (not Builder::system_clock)");
        clock.advance(by);
        self.running
            .shared()
            .events()
            .advance()
            .expect("the events engine applies what became due")
    }

    /// The running server: its shared state and VM registry, for tests that reach inside.
    pub fn running(&self) -> &Running {
        &self.running
    }

    /// Stops serving and waits until every task has ended.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A directory under the system temp dir, unique per process and call, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, (PathBuf, std::io::Error)> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "azimds-testing-{}-{n}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| (dir.clone(), e))?;
        Ok(TempDir(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
