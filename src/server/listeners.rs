//! Binding the listeners: the guest plane's TCP addresses, and the control API on loopback TCP
//! (with the bearer token from the data directory) or on a unix socket.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};

use crate::config::ControlAddress;
use crate::control::token::ControlToken;
use crate::control::{self, Access, ControlState};
use crate::server::Error;

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

/// Binds every guest address, in order.
pub(super) async fn bind_guests(addresses: &[SocketAddr]) -> Result<Vec<TcpListener>, Error> {
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in addresses {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen {
                what: "the guest plane",
                address: address.to_string(),
                source,
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
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
            let token = ControlToken::load_or_create(data_dir).map_err(Error::ControlToken)?;
            let listener = TcpListener::bind(socket).await.map_err(listen_error)?;
            Ok(ControlListener::Tcp {
                listener,
                token: Arc::new(token),
            })
        }
        ControlAddress::Unix(path) => {
            // A stale socket from a previous run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path).ok();
            }
            let listener = UnixListener::bind(path).map_err(listen_error)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| Error::Restrict {
                    path: path.clone(),
                    source,
                },
            )?;
            Ok(ControlListener::Unix {
                listener,
                path: path.clone(),
            })
        }
    }
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

    /// Serves the control API until `shutdown`.
    pub(super) async fn serve(
        self,
        state: Arc<ControlState>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let result = match self {
            ControlListener::Tcp { listener, token } => {
                let router = control::router(state, Access::Token(token));
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            ControlListener::Unix { listener, .. } => {
                let router = control::router(state, Access::Socket);
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "control API stopped");
        }
    }
}
