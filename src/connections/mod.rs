//! What keeps one caller from taking a listener away from the others: caps on open
//! connections ([`limits`]), closing connections that stop making progress ([`stall`]), and
//! accept errors (typically EMFILE) logged at a bounded rate ([`AcceptErrors`]). Used by the
//! guest plane and the control API alike.

pub mod head_limit;
#[cfg(test)]
mod head_tests;
pub mod head_timer;
pub mod limits;
pub mod stall;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

pub use head_limit::HeadWatch;
pub use head_timer::HeadTimer;
pub use limits::{Caps, Permit, Refused, Tracker};
pub use stall::{StallGuard, StallLimits};

/// What a listener enforces on its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionPolicy {
    pub caps: Caps,
    /// The whole request head must arrive within this time; it also bounds how long an idle
    /// keep-alive connection stays open (the timer runs while a connection waits for a head:
    /// hyper's on the control plane, the stall guard's on the guest plane, `head_limit`).
    pub head_timeout: Duration,
    pub stall: StallLimits,
}

/// How often accept errors are logged at most; the ones in between are counted.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long an accept loop waits after an error (EMFILE would otherwise spin).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Logs accept errors at most once per interval, with how many were not logged.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    pub fn record(&mut self, listener: &str, error: &std::io::Error) {
        let now = Instant::now();
        let due = self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_ERROR_LOG_INTERVAL);
        if due {
            tracing::warn!(listener, %error, suppressed = self.suppressed, "accepting a connection failed");
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

/// Logs a refused connection at debug level (a flood must not flood the log too).
pub fn log_refused(listener: &str, peer: &str, refused: Refused) {
    let reason = match refused {
        Refused::Total => "the listener's connection cap is reached",
        Refused::PerCaller => "the caller's connection cap is reached",
    };
    tracing::debug!(listener, peer, reason, "closed a new connection unanswered");
}

/// A listener connections are accepted from.
pub trait Listen {
    type Stream;
    /// The next connection and its peer (`None` for a unix socket).
    fn accept_one(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, Option<SocketAddr>)>> + Send;

    /// Readies an admitted connection for serving (not done for refused ones: a flood of
    /// them costs an accept and a close each, nothing more).
    fn prepare(_stream: &Self::Stream) {}
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    async fn accept_one(&self) -> std::io::Result<(TcpStream, Option<SocketAddr>)> {
        let (stream, peer) = self.accept().await?;
        Ok((stream, Some(peer)))
    }

    fn prepare(stream: &TcpStream) {
        let _ = stream.set_nodelay(true);
    }
}

/// A listener lent for a while (a fleet host's control listener answers "waiting for etcd"
/// before it serves the control API).
impl<L: Listen + Sync> Listen for &L {
    type Stream = L::Stream;
    fn accept_one(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, Option<SocketAddr>)>> + Send {
        (**self).accept_one()
    }

    fn prepare(stream: &Self::Stream) {
        L::prepare(stream);
    }
}

impl Listen for UnixListener {
    type Stream = UnixStream;
    async fn accept_one(&self) -> std::io::Result<(UnixStream, Option<SocketAddr>)> {
        Ok((self.accept().await?.0, None))
    }
}

/// Accepts until a connection is both `wanted` (by its peer) and admitted under `tracker`'s
/// caps, closing every other one at once, unanswered. Cancel-safe: nothing is held across an
/// await but the listener's own accept.
pub async fn next_admitted<L: Listen>(
    listener: &L,
    tracker: &Arc<Tracker>,
    errors: &mut AcceptErrors,
    name: &str,
    mut wanted: impl FnMut(Option<SocketAddr>) -> bool,
) -> (L::Stream, Option<SocketAddr>, Permit) {
    loop {
        let (stream, peer) = match listener.accept_one().await {
            Ok(accepted) => accepted,
            Err(error) => {
                errors.record(name, &error);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if !wanted(peer) {
            continue;
        }
        match tracker.admit(peer.map(|p| p.ip())) {
            Ok(permit) => {
                L::prepare(&stream);
                return (stream, peer, permit);
            }
            Err(refused) => {
                let peer = peer.map_or_else(|| "unix".to_string(), |p| p.to_string());
                log_refused(name, &peer, refused);
            }
        }
    }
}
