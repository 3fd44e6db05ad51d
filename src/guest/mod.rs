//! The guest plane: the HTTP listener VMs reach at 169.254.169.254. Every URL a VM can call is
//! in `Endpoint` and nowhere else; this module reads the [`Shared`] state and knows nothing
//! of the control plane.
//!
//! A small hyper service rather than a framework: the whole request is answered synchronously
//! from the in-memory snapshot, so per-request cost is parsing plus slicing pre-rendered bytes.

mod attested;
mod error;
mod exchange;
mod faults;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod identity;
mod instance;
mod loadbalancer;
mod reprovision;
mod request;
mod response;
mod scheduled;
mod versions;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, Request, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::connections::{
    self, AcceptErrors, ConnectionPolicy, HeadWatch, Permit, StallGuard, Tracker,
};
use crate::faults::Action;
pub use crate::guest::error::{GuestError, IdentityError, LB_LIMITS, LoadBalancerError};
use crate::guest::exchange::Exchange;
use crate::guest::faults::{Aborted, ResetOnDrop};
use crate::guest::request::HeaderFacts;
pub use crate::guest::response::Body;
use crate::snapshot::ServedVm;
use crate::state::Shared;
use crate::telemetry::GuestEndpoint;

/// Largest request head (request line plus headers) read; hyper answers 414/431 beyond it.
/// Azure's own limits are of this order (§8.4).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Serves guest connections from `listener` until `shutdown` completes, at most as many at
/// once as `connections` allows (shared by every guest listener).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<Tracker>,
    policy: ConnectionPolicy,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut errors = AcceptErrors::default();
    // Fail closed: an address that belongs to no VM gets the connection closed unanswered,
    // as a real VM's secondary address gets no answer from IMDS (§1.1).
    let known_caller = |peer: Option<SocketAddr>| {
        let known = peer.is_some_and(|p| shared.published().load().resolve(p.ip()).is_some());
        if !known {
            shared.count_unknown_caller();
            tracing::debug!(
                ?peer,
                "closed a connection from an address that belongs to no VM"
            );
        }
        known
    };
    loop {
        let accepted =
            connections::next_admitted(&listener, &connections, &mut errors, "guest", known_caller);
        let (stream, peer, permit) = tokio::select! {
            () = &mut shutdown => return,
            accepted = accepted => accepted,
        };
        let Some(peer) = peer else { continue };
        tokio::spawn(serve_connection(
            Arc::clone(&shared),
            stream,
            peer,
            permit,
            policy,
        ));
    }
}

/// What a connection's requests share: the state, whether a reset fault aborted it, and
/// the head limit's news of each request.
struct Connection {
    shared: Arc<Shared>,
    reset: Arc<AtomicBool>,
    heads: Arc<HeadWatch>,
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    _permit: Permit,
    policy: ConnectionPolicy,
) {
    let reset = Arc::new(AtomicBool::new(false));
    let heads = Arc::new(HeadWatch::default());
    let connection = Arc::new(Connection {
        shared,
        reset: Arc::clone(&reset),
        heads: Arc::clone(&heads),
    });
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        connection.heads.arrived();
        let connection = Arc::clone(&connection);
        // Answered here when nothing waits, so the request, which holds slices of hyper's
        // read buffer, is gone before hyper next reads and it reuses the buffer instead of
        // allocating another one per request.
        let started = start(&connection.shared, peer, request);
        async move {
            let answered = match started {
                Started::Answered(answered) => answered,
                Started::Waits(waiting) => waiting.finish(&connection.shared).await,
            };
            if answered.is_err() {
                connection.reset.store(true, Ordering::Relaxed);
            }
            answered
        }
    });
    // The head timeout is the guard's, not hyper's `header_read_timeout` (`head_limit`).
    let io = StallGuard::new(ResetOnDrop::new(stream, reset), policy.stall)
        .with_head_limit(policy.head_timeout, heads);
    let connection = http1::Builder::new()
        .max_buf_size(MAX_REQUEST_HEAD)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "guest connection ended with an error");
    }
}

/// Answers one request (public so tests can drive the guest plane in-process, where a reset
/// fault, having no connection to reset, answers 500). Order of checks: the caller's VM, its
/// fault rules, then route, method, throttle, headers and the endpoint's own parameters
/// (spec §1.10's recommended order; throttling comes first among the per-VM checks because
/// every request counts against the VM's budget).
pub async fn respond<B>(shared: &Shared, peer: SocketAddr, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    answer(shared, peer, request)
        .await
        .unwrap_or_else(|Aborted| GuestError::Internal.into_response())
}

/// [`respond`], or `Err` when a reset fault says to drop the connection unanswered.
async fn answer<B>(
    shared: &Shared,
    peer: SocketAddr,
    request: Request<B>,
) -> Result<Response<Body>, Aborted>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match start(shared, peer, request) {
        Started::Answered(answered) => answered,
        Started::Waits(waiting) => waiting.finish(shared).await,
    }
}

/// A request after its synchronous part: answered, or left to an await.
enum Started<B> {
    Answered(Result<Response<Body>, Aborted>),
    /// Boxed: the answered case, nearly every request, then moves fewer bytes.
    Waits(Box<Waiting<B>>),
}

/// A request whose answer waits: for a delay or stall fault, a token, the events engine or
/// a signature.
struct Waiting<B> {
    /// With its VM resolved.
    exchange: Exchange,
    head: Request<()>,
    body: B,
    injected: Option<Action>,
}

/// Resolves the caller and its fault rules and answers at once unless something waits.
fn start<B>(shared: &Shared, peer: SocketAddr, request: Request<B>) -> Started<B> {
    // Only a scheduled-events POST reads its body; everything else works on the head.
    let (parts, body) = request.into_parts();
    let head = Request::from_parts(parts, ());
    let mut exchange = Exchange::begin(&head);
    let Some(vm) = resolve(shared, peer.ip()) else {
        return Started::Answered(Ok(exchange.finish(
            shared,
            &head,
            Err(GuestError::NotFound),
        )));
    };
    let injected = exchange.inject(shared, &vm, &head);
    exchange.vm = Some(vm);
    let endpoint = Endpoint::from_path(head.uri().path());
    exchange.endpoint = endpoint.as_ref().ok().and_then(Endpoint::label);
    let waits = matches!(injected, Some(Action::Delay(_) | Action::Stall))
        || endpoint.as_ref().is_ok_and(Endpoint::waits);
    if waits {
        return Started::Waits(Box::new(Waiting {
            exchange,
            head,
            body,
            injected,
        }));
    }
    let vm = exchange.vm.as_ref().expect("just set");
    let answered = match faults::immediate(injected, &head) {
        Some(early) => early,
        None => {
            endpoint.and_then(|endpoint| route_now(shared, vm, &head, &exchange.headers, endpoint))
        }
    };
    let concluded = exchange.conclude(shared, &head, answered);
    response::recycle(head.into_parts().0.headers);
    Started::Answered(concluded)
}

impl<B> Waiting<B>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn finish(self: Box<Self>, shared: &Shared) -> Result<Response<Body>, Aborted> {
        let Waiting {
            exchange,
            head,
            body,
            injected,
        } = *self;
        let vm = exchange.vm.as_ref().expect("resolved before waiting");
        let headers = &exchange.headers;
        let stalled = || exchange.record_unanswered(shared, &head);
        let answered = match faults::before(injected, &head, stalled).await {
            Some(early) => early,
            None => route(shared, vm, &head, headers, body).await,
        };
        let concluded = exchange.conclude(shared, &head, answered);
        response::recycle(head.into_parts().0.headers);
        concluded
    }
}

/// The VM the caller is, if it still is one.
fn resolve(shared: &Shared, peer: IpAddr) -> Option<Arc<ServedVm>> {
    let vm = shared.published().load().resolve(peer).cloned();
    if vm.is_none() {
        // The VM was removed while this connection was open.
        shared.count_unknown_caller();
    }
    vm
}

/// The endpoints that wait ([`Endpoint::waits`]), after the checks they share.
async fn route<B>(
    shared: &Shared,
    vm: &Arc<ServedVm>,
    request: &Request<()>,
    headers: &HeaderFacts,
    body: B,
) -> Result<Response<Body>, GuestError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let endpoint = Endpoint::from_path(request.uri().path())?;
    if !endpoint.waits() {
        // A delay fault's request to an endpoint that answers at once.
        return route_now(shared, vm, request, headers, endpoint);
    }
    endpoint.check_method(request.method())?;
    if let Endpoint::Identity(endpoint) = endpoint {
        // Own limits (spec §1.11), and an await for signing: handled apart from the rest.
        return identity::respond(shared, vm, request, endpoint).await;
    }
    throttle(shared, vm)?;
    check_headers(&endpoint, request, headers)?;
    let query = request::Query::parse(request.uri().query())?;
    match endpoint {
        Endpoint::ScheduledEvents => {
            if request.method() == Method::POST {
                scheduled::post(shared.events(), vm, &query, body).await
            } else {
                scheduled::get(shared.events(), vm, &query, request.headers()).await
            }
        }
        Endpoint::AttestedDocument => attested::document(shared, Arc::clone(vm), &query).await,
        _ => unreachable!("answered by route_now"),
    }
}

/// Every endpoint that answers at once: the same checks in the same order as [`route`].
fn route_now(
    shared: &Shared,
    vm: &ServedVm,
    request: &Request<()>,
    headers: &HeaderFacts,
    endpoint: Endpoint<'_>,
) -> Result<Response<Body>, GuestError> {
    if let Endpoint::LoadBalancer(sub_path) = endpoint {
        // Its own error catalogue (spec §8.4), for 404 and 405 too.
        return loadbalancer::respond(shared, vm, request, sub_path);
    }
    endpoint.check_method(request.method())?;
    throttle(shared, vm)?;
    if let Endpoint::AttestedIssuer = endpoint {
        // Certificate tooling fetches AIA URLs with no Metadata header and no api-version.
        return Ok(attested::issuer(shared));
    }
    check_headers(&endpoint, request, headers)?;
    let query = request::Query::parse(request.uri().query())?;
    match endpoint {
        Endpoint::Versions => Ok(versions::get()),
        Endpoint::Instance(rest) => instance::get(vm, &query, rest),
        Endpoint::ReprovisionData => reprovision::get(vm, &query),
        _ => unreachable!("answered by route"),
    }
}

/// The `Metadata` and `X-Forwarded-For` rules; the scheduled-events preview did not enforce
/// the `Metadata` header (§6.1).
fn check_headers(
    endpoint: &Endpoint<'_>,
    request: &Request<()>,
    headers: &HeaderFacts,
) -> Result<(), GuestError> {
    match request::check_headers_given(headers) {
        Err(GuestError::MissingMetadataHeader)
            if matches!(endpoint, Endpoint::ScheduledEvents)
                && scheduled::is_preview(request.uri().query()) =>
        {
            Ok(())
        }
        checked => checked,
    }
}

/// Whether the VM is within its request budget.
fn throttle(shared: &Shared, vm: &ServedVm) -> Result<(), GuestError> {
    let bucket = vm.throttle();
    if bucket.is_limited() && !bucket.try_acquire(shared.clock().now()) {
        return Err(GuestError::Throttled);
    }
    Ok(())
}

/// Every URL a guest can call.
enum Endpoint<'a> {
    Versions,
    /// The path after `/metadata/instance`.
    Instance(&'a str),
    ScheduledEvents,
    Identity(identity::Endpoint),
    /// `/metadata/attested/document` (§7).
    AttestedDocument,
    /// `/metadata/attested/ca.cer`: the issuer download generated leaves name (not Azure's).
    AttestedIssuer,
    /// The path after `/metadata/loadbalancer` (§8; anything but nothing is its 404).
    LoadBalancer(&'a str),
    /// `/metadata/reprovisiondata` (§9.2).
    ReprovisionData,
}

impl<'a> Endpoint<'a> {
    fn from_path(path: &'a str) -> Result<Endpoint<'a>, GuestError> {
        let exactly = |root: &str| path == root || path.strip_suffix('/') == Some(root);
        if exactly("/metadata/versions") {
            Ok(Endpoint::Versions)
        } else if let Some(rest) = path.strip_prefix("/metadata/instance") {
            if rest.is_empty() || rest.starts_with('/') {
                Ok(Endpoint::Instance(rest))
            } else {
                Err(GuestError::NotFound)
            }
        } else if exactly("/metadata/scheduledevents") {
            Ok(Endpoint::ScheduledEvents)
        } else if let Some(rest) = path.strip_prefix("/metadata/identity") {
            identity::Endpoint::from_path(rest)
                .map(Endpoint::Identity)
                .ok_or(GuestError::NotFound)
        } else if exactly("/metadata/attested/document") {
            Ok(Endpoint::AttestedDocument)
        } else if path == "/metadata/attested/ca.cer" {
            Ok(Endpoint::AttestedIssuer)
        } else if let Some(rest) = path.strip_prefix("/metadata/loadbalancer")
            && (rest.is_empty() || rest.starts_with('/'))
        {
            Ok(Endpoint::LoadBalancer(rest))
        } else if exactly("/metadata/reprovisiondata") {
            Ok(Endpoint::ReprovisionData)
        } else {
            Err(GuestError::NotFound)
        }
    }

    /// The metrics and journal label, where it follows from the variant alone: the same as
    /// `GuestEndpoint::from_path` gives these paths (an identity path's depends on the rest).
    fn label(&self) -> Option<GuestEndpoint> {
        match self {
            Endpoint::Versions => Some(GuestEndpoint::Versions),
            Endpoint::Instance(_) => Some(GuestEndpoint::Instance),
            Endpoint::ScheduledEvents => Some(GuestEndpoint::ScheduledEvents),
            Endpoint::Identity(_) => None,
            Endpoint::AttestedDocument | Endpoint::AttestedIssuer => Some(GuestEndpoint::Attested),
            Endpoint::LoadBalancer(_) => Some(GuestEndpoint::LoadBalancer),
            Endpoint::ReprovisionData => Some(GuestEndpoint::ReprovisionData),
        }
    }

    /// Whether answering waits (a token, the events engine, a signature); every other
    /// endpoint answers before hyper polls the answer.
    fn waits(&self) -> bool {
        matches!(
            self,
            Endpoint::Identity(_) | Endpoint::ScheduledEvents | Endpoint::AttestedDocument
        )
    }

    fn check_method(&self, method: &Method) -> Result<(), GuestError> {
        match (self, method) {
            (_, &Method::GET) | (Endpoint::ScheduledEvents, &Method::POST) => Ok(()),
            (Endpoint::ScheduledEvents, _) => {
                Err(GuestError::MethodNotAllowed { allow: "GET, POST" })
            }
            _ => Err(GuestError::MethodNotAllowed { allow: "GET" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routers_labels_agree_with_the_paths() {
        for path in [
            "/metadata/versions",
            "/metadata/versions/",
            "/metadata/instance",
            "/metadata/instance/",
            "/metadata/instance/compute/vmId",
            "/metadata/scheduledevents",
            "/metadata/identity/oauth2/token",
            "/metadata/identity/info",
            "/metadata/attested/document",
            "/metadata/attested/document/",
            "/metadata/attested/ca.cer",
            "/metadata/loadbalancer",
            "/metadata/loadbalancer/x",
            "/metadata/reprovisiondata",
        ] {
            let endpoint = Endpoint::from_path(path).unwrap_or_else(|_| panic!("{path}"));
            if let Some(label) = endpoint.label() {
                assert_eq!(label, GuestEndpoint::from_path(path), "{path}");
            }
        }
    }
}
