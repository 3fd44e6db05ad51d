//! Binding the listeners: the guest plane's TCP addresses, and the control API on loopback TCP
//! (with the bearer token from the data directory) or on a unix socket.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};

use crate::config::{ControlAddress, WireServerListen};
use crate::connections::{
    self, AcceptErrors, ConnectionPolicy, HeadTimer, Listen, StallGuard, Tracker,
};
use crate::control::token::{self, ControlToken};
use crate::control::{self, Access, ControlState};
use crate::server::data_dir;
use crate::server::error::Error;

/// The control listener, bound.
#[derive(Debug)]
pub(super) enum ControlListener {
    Tcp {
        listener: TcpListener,
        token: Arc<ControlToken>,
    },
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// The guest listeners' accept queue. Larger than tokio's 1024 so a burst of connections
/// from one VM (which are refused at accept) is less likely to fill it and make another VM's
/// connection wait for a SYN retransmission; the kernel caps it at `net.core.somaxconn`.
const GUEST_BACKLOG: u32 = 4096;

/// Binds every guest address, in order.
pub(super) async fn bind_guests(addresses: &[SocketAddr]) -> Result<Vec<TcpListener>, Error> {
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in addresses {
        let listener = bind_tcp(*address, GUEST_BACKLOG).map_err(|source| Error::Listen {
            what: "the guest plane",
            address: address.to_string(),
            source,
        })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The WireServer companion's two listeners, bound.
#[derive(Debug)]
pub(super) struct WireServerListeners {
    pub(super) wireserver: TcpListener,
    pub(super) host_plugin: TcpListener,
}

/// Binds the WireServer and Host GA Plugin listeners, when configured.
pub(super) async fn bind_wireserver(
    listen: Option<WireServerListen>,
) -> Result<Option<WireServerListeners>, Error> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let bind = |what: &'static str, address: SocketAddr| async move {
        TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen {
                what,
                address: address.to_string(),
                source,
            })
    };
    Ok(Some(WireServerListeners {
        wireserver: bind("the WireServer", listen.wireserver).await?,
        host_plugin: bind("the Host GA Plugin", listen.host_plugin).await?,
    }))
}

/// A TCP listener on `address` with an accept queue of `backlog`, reusing the address as
/// `TcpListener::bind` does.
fn bind_tcp(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Binds the control listener; a TCP one gets the data directory's token (made on first use).
pub(super) async fn bind_control(
    address: &ControlAddress,
    data_dir: &Path,
) -> Result<ControlListener, Error> {
    let listen_error = |source| Error::Listen {
        what: "the control API",
        address: address.to_string(),
        source,
    };
    match address {
        ControlAddress::Tcp(socket) => {
            if !socket.ip().is_loopback() {
                tracing::warn!(address = %socket, "the control API listens beyond loopback; only its bearer token protects it");
            }
            data_dir::check_private_file(&token::path(data_dir), "control token")?;
            let token = ControlToken::load_or_create(data_dir).map_err(Error::ControlToken)?;
            let listener = TcpListener::bind(socket).await.map_err(listen_error)?;
            Ok(ControlListener::Tcp {
                listener,
                token: Arc::new(token),
            })
        }
        ControlAddress::Unix(path) => {
            let listener = bind_private_socket(path).map_err(listen_error)?;
            Ok(ControlListener::Unix {
                listener,
                path: path.clone(),
            })
        }
    }
}

/// Binds a unix socket that is owner-only from the moment it exists: it is made in a fresh
/// 0700 directory beside `path`, restricted there, then renamed into place. A stale socket
/// left by a crash is replaced; a live one, or anything that is not a socket, is refused.
fn bind_private_socket(path: &Path) -> std::io::Result<UnixListener> {
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        if !existing.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another server is listening on it",
            ));
        }
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = parent.join(format!(".azimds-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let staged = staging.join("control.sock");
    let bound = UnixListener::bind(&staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

impl ControlListener {
    /// Where it listens: `host:port` (the bound port) or `unix:/path`.
    pub(super) fn address(&self) -> String {
        match self {
            ControlListener::Tcp { listener, .. } => listener
                .local_addr()
                .map_or_else(|_| "unknown".into(), |a| a.to_string()),
            ControlListener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }

    /// Serves the control API until `shutdown`, under `policy`; connections still open then
    /// are asked to finish and dropped after [`SHUTDOWN_GRACE`].
    pub(super) async fn serve(
        self,
        state: Arc<ControlState>,
        policy: ConnectionPolicy,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        match self {
            ControlListener::Tcp { listener, token } => {
                let router = control::router(state, Access::Token(token));
                serve_router(listener, router, policy, shutdown).await;
            }
            ControlListener::Unix { listener, path } => {
                let router = control::router(state, Access::Socket);
                serve_router(listener, router, policy, shutdown).await;
                // Nobody can connect any more; a stale socket would only mislead.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// How long open control connections get to finish their request at shutdown.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The control API's accept loop: caps at accept, a head timeout and stall limits per
/// connection, and a shutdown that never waits on a client longer than [`SHUTDOWN_GRACE`].
pub(super) async fn serve_router<L>(
    listener: L,
    router: axum::Router,
    policy: ConnectionPolicy,
    shutdown: impl Future<Output = ()>,
) where
    L: Listen,
    L::Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let tracker = Tracker::new(policy.caps);
    let mut errors = AcceptErrors::default();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted =
            connections::next_admitted(&listener, &tracker, &mut errors, "control", |_| true);
        let (stream, _, permit) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accepted => accepted,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            let connection = http1::Builder::new()
                .timer(HeadTimer)
                .header_read_timeout(policy.head_timeout)
                .serve_connection(TokioIo::new(StallGuard::new(stream, policy.stall)), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "control connection ended with an error");
                    }
                    return;
                }
                _ = stopping.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
        // Reap finished connections so the set does not grow with the listener's lifetime.
        while connections.try_join_next().is_some() {}
    }
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::info!("control connections still open at shutdown were dropped");
    }
}
