//! The guest plane: the HTTP listener VMs reach at 169.254.169.254. Every URL a VM can call is
//! routed in [`route`] and nowhere else; nothing here can reach the control plane.
//!
//! A small hyper service rather than a framework: the whole request is answered synchronously
//! from the in-memory snapshot, so per-request cost is parsing plus slicing pre-rendered bytes.

mod error;
mod identity;
mod instance;
mod request;
mod response;
mod scheduled;
mod versions;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Method, Request, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
pub use crate::guest::error::{GuestError, IdentityError};
pub use crate::guest::response::Body;
use crate::identity::Issuer;
use crate::identity::limits::IdentityLimits;
use crate::maintenance::Maintenance;
use crate::snapshot::{ServedVm, Snapshot};

/// Largest request head (request line plus headers) read; hyper answers 414/431 beyond it.
/// Azure's own limits are of this order (§8.4).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// A client that has not sent a full request head by then is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// State shared by every guest connection.
#[derive(Debug)]
pub struct GuestPlane {
    snapshot: ArcSwap<Snapshot>,
    unknown_callers: AtomicU64,
    clock: Arc<dyn Clock>,
    identity: identity::IdentityPlane,
    /// The scheduled-events engine; attached once at start (it needs the plane to exist).
    events: OnceLock<Arc<Maintenance>>,
}

impl GuestPlane {
    /// A guest plane on the system clock.
    pub fn new(snapshot: Snapshot) -> GuestPlane {
        GuestPlane::with_clock(snapshot, Arc::new(SystemClock))
    }

    pub fn with_clock(snapshot: Snapshot, clock: Arc<dyn Clock>) -> GuestPlane {
        GuestPlane {
            snapshot: ArcSwap::from_pointee(snapshot),
            unknown_callers: AtomicU64::new(0),
            clock,
            identity: identity::IdentityPlane::default(),
            events: OnceLock::new(),
        }
    }

    /// Serves scheduled events from `engine`. Only the first call has an effect.
    pub fn attach_events(&self, engine: Arc<Maintenance>) {
        let _ = self.events.set(engine);
    }

    /// The scheduled-events engine, once attached.
    pub fn events(&self) -> Option<&Arc<Maintenance>> {
        self.events.get()
    }

    /// Uses `issuer` for managed-identity tokens and `limits` for the identity category.
    /// Without this, a plane signs with an in-memory key made on the first token request,
    /// under Azure's default limits.
    pub fn with_identity(mut self, issuer: Arc<Issuer>, limits: IdentityLimits) -> GuestPlane {
        self.identity = identity::IdentityPlane::new(issuer, limits);
        self
    }

    /// The token issuer (for the control plane's JWKS and OpenID documents, and key rotation).
    pub fn issuer(&self) -> Result<Arc<Issuer>, GuestError> {
        self.identity.issuer(self).map(Arc::clone)
    }

    fn count_unknown_caller(&self) {
        self.unknown_callers.fetch_add(1, Ordering::Relaxed);
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Wall-clock time as the guest plane sees it.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Publishes a new snapshot; the next request of every VM sees it.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Connections refused because their address belongs to no VM.
    pub fn unknown_callers(&self) -> u64 {
        self.unknown_callers.load(Ordering::Relaxed)
    }
}

/// Serves guest connections from `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    plane: Arc<GuestPlane>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accepting a guest connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Fail closed: an address that belongs to no VM gets the connection closed unanswered,
        // as a real VM's secondary address gets no answer from IMDS (§1.1).
        if plane.snapshot.load().resolve(peer.ip()).is_none() {
            plane.unknown_callers.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "closed a connection from an address that belongs to no VM");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let plane = Arc::clone(&plane);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let plane = Arc::clone(&plane);
                async move { Ok::<_, Infallible>(respond(&plane, peer, request).await) }
            });
            let connection = http1::Builder::new()
                .max_buf_size(MAX_REQUEST_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "guest connection ended with an error");
            }
        });
    }
}

/// Answers one request (public so tests can drive the guest plane in-process). Order of checks: route, method, caller, throttle, headers, then the
/// endpoint's own parameters (spec §1.10's recommended order; throttling comes first among the
/// per-VM checks because every request counts against the VM's budget).
pub async fn respond<B>(plane: &GuestPlane, peer: SocketAddr, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Only a scheduled-events POST reads its body; everything else works on the head.
    let (parts, body) = request.into_parts();
    let head = Request::from_parts(parts, ());
    route(plane, peer.ip(), &head, body)
        .await
        .unwrap_or_else(GuestError::into_response)
}

async fn route<B>(
    plane: &GuestPlane,
    peer: IpAddr,
    request: &Request<()>,
    body: B,
) -> Result<Response<Body>, GuestError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path();
    let endpoint = if path == "/metadata/versions" || path == "/metadata/versions/" {
        Endpoint::Versions
    } else if let Some(rest) = path.strip_prefix("/metadata/instance") {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(GuestError::NotFound);
        }
        Endpoint::Instance(rest)
    } else if path == "/metadata/scheduledevents" || path == "/metadata/scheduledevents/" {
        Endpoint::ScheduledEvents
    } else if let Some(rest) = path.strip_prefix("/metadata/identity") {
        Endpoint::Identity(identity::Endpoint::from_path(rest).ok_or(GuestError::NotFound)?)
    } else {
        return Err(GuestError::NotFound);
    };
    match (&endpoint, request.method()) {
        (_, &Method::GET) | (Endpoint::ScheduledEvents, &Method::POST) => {}
        (Endpoint::ScheduledEvents, _) => {
            return Err(GuestError::MethodNotAllowed { allow: "GET, POST" });
        }
        _ => return Err(GuestError::MethodNotAllowed { allow: "GET" }),
    }
    if let Endpoint::Identity(endpoint) = endpoint {
        // Own limits (spec §1.11), and an await for signing: handled apart from the rest.
        return identity::respond(plane, peer, request, endpoint).await;
    }
    let snapshot = plane.snapshot.load();
    let Some(vm) = snapshot.resolve(peer) else {
        // The VM was removed while this connection was open.
        plane.unknown_callers.fetch_add(1, Ordering::Relaxed);
        return Err(GuestError::NotFound);
    };
    throttle(vm)?;
    request::check_headers(request.headers())?;
    let query = request::Query::parse(request.uri().query())?;
    match endpoint {
        Endpoint::Versions => Ok(versions::get()),
        Endpoint::Instance(rest) => instance::get(vm, &query, rest),
        Endpoint::ScheduledEvents => {
            let engine = plane.events().ok_or(GuestError::NotFound)?;
            let vm = Arc::clone(vm);
            drop(snapshot);
            if request.method() == Method::POST {
                scheduled::post(engine, &vm, &query, body).await
            } else {
                scheduled::get(engine, &vm, &query, request.headers()).await
            }
        }
        Endpoint::Identity(_) => unreachable!("identity requests return above"),
    }
}

enum Endpoint<'a> {
    Versions,
    /// The path after `/metadata/instance`.
    Instance(&'a str),
    ScheduledEvents,
    Identity(identity::Endpoint),
}

fn throttle(vm: &ServedVm) -> Result<(), GuestError> {
    if vm.throttle().try_acquire(tokio::time::Instant::now()) {
        Ok(())
    } else {
        Err(GuestError::Throttled)
    }
}
