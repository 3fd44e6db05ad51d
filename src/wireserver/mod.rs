//! The WireServer companion (wireserver.md): the second guest listener, at 168.63.129.16:80,
//! and the Host GA Plugin at port 32526. Over the same snapshot and caller resolution as the
//! IMDS guest plane — a connection's peer address picks its VM, a stranger's connection is
//! closed unanswered — so each VM sees only its own goal state and can report only its own
//! health. Every URL is in `endpoint.rs`; every failure's answer in `error.rs`.
//!
//! It reads [`Shared`] and writes through one engine: a health report goes to
//! `provisioning::Provisioning::report` (durable before it is acknowledged). It knows nothing
//! of the IMDS guest plane or the control plane.

mod body;
mod documents;
mod endpoint;
mod error;
mod health;
mod hostplugin;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::connections::{self, AcceptErrors, ConnectionPolicy, Permit, StallGuard, Tracker};
use crate::provisioning::{self, Provisioning, Report};
use crate::snapshot::ServedVm;
use crate::state::Shared;
use crate::wireserver::documents::GoalState;
use crate::wireserver::documents::{CERTIFICATES, HOST_PLUGIN_VERSIONS, VERSIONS};
use crate::wireserver::endpoint::{Config, Endpoint, HostPluginEndpoint};
pub use crate::wireserver::error::Body;
use crate::wireserver::error::{CONTENT_TYPE_JSON, CONTENT_TYPE_XML, WireError, empty, with_body};

/// Largest request head read, as on the IMDS guest plane.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Which of the two services a listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// 168.63.129.16:80: versions, goal state, health, telemetry.
    WireServer,
    /// 168.63.129.16:32526: vmSettings, versions, health, status.
    HostPlugin,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::WireServer => "wireserver",
            Service::HostPlugin => "host GA plugin",
        }
    }
}

/// Serves `service` on `listener` until `shutdown`, under the guest plane's connection caps.
pub async fn serve(
    service: Service,
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<Tracker>,
    policy: ConnectionPolicy,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut errors = AcceptErrors::default();
    // Fail closed, as the IMDS guest plane does: an address that is no VM gets nothing.
    let known_caller = |peer: Option<SocketAddr>| {
        let known = peer.is_some_and(|p| shared.published().load().resolve(p.ip()).is_some());
        if !known {
            shared.count_unknown_caller();
            tracing::debug!(
                ?peer,
                listener = service.name(),
                "closed a connection from an address that belongs to no VM"
            );
        }
        known
    };
    loop {
        let accepted = connections::next_admitted(
            &listener,
            &connections,
            &mut errors,
            service.name(),
            known_caller,
        );
        let (stream, peer, permit) = tokio::select! {
            () = &mut shutdown => return,
            accepted = accepted => accepted,
        };
        let Some(peer) = peer else { continue };
        let local = stream.local_addr().ok();
        tokio::spawn(serve_connection(
            service,
            Arc::clone(&shared),
            stream,
            Caller { peer, local },
            permit,
            policy,
        ));
    }
}

/// Where a connection came from and where it arrived.
#[derive(Clone, Copy, Debug)]
struct Caller {
    peer: SocketAddr,
    local: Option<SocketAddr>,
}

async fn serve_connection(
    service: Service,
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    caller: Caller,
    _permit: Permit,
    policy: ConnectionPolicy,
) {
    let handler = service_fn(move |request: Request<hyper::body::Incoming>| {
        let shared = Arc::clone(&shared);
        async move {
            let response = respond(service, &shared, caller, request)
                .await
                .unwrap_or_else(WireError::into_response);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .max_buf_size(MAX_REQUEST_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(policy.head_timeout)
        .serve_connection(TokioIo::new(StallGuard::new(stream, policy.stall)), handler);
    if let Err(error) = connection.await {
        tracing::debug!(peer = %caller.peer, %error, "wireserver connection ended with an error");
    }
}

/// Answers one request: route, method, caller, then the endpoint.
async fn respond<B>(
    service: Service,
    shared: &Shared,
    caller: Caller,
    request: Request<B>,
) -> Result<Response<Body>, WireError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (head, body) = request.into_parts();
    let Some(vm) = resolve(shared, caller.peer.ip()) else {
        // The VM was removed while this connection was open.
        shared.count_unknown_caller();
        return Err(WireError::NotFound);
    };
    match service {
        Service::WireServer => {
            let endpoint = Endpoint::parse(head.uri.path(), head.uri.query())?;
            check_method(&head.method, endpoint.method())?;
            let goal_state = GoalState::new(vm.definition(), base_url(&head.headers, caller));
            wireserver(shared, &vm, &goal_state, endpoint, &head.headers, body).await
        }
        Service::HostPlugin => {
            let endpoint = HostPluginEndpoint::parse(head.uri.path())?;
            check_method(&head.method, endpoint.method())?;
            host_plugin(shared.provisioning(), &vm, endpoint, shared, body).await
        }
    }
}

fn resolve(shared: &Shared, peer: IpAddr) -> Option<Arc<ServedVm>> {
    shared.published().load().resolve(peer).cloned()
}

fn check_method(method: &Method, allowed: &'static str) -> Result<(), WireError> {
    if method.as_str() == allowed {
        Ok(())
    } else {
        Err(WireError::MethodNotAllowed { allow: allowed })
    }
}

async fn wireserver<B>(
    shared: &Shared,
    vm: &ServedVm,
    goal_state: &GoalState,
    endpoint: Endpoint,
    headers: &http::HeaderMap,
    body: B,
) -> Result<Response<Body>, WireError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let xml = |text: String| {
        Ok(with_body(
            StatusCode::OK,
            CONTENT_TYPE_XML,
            Bytes::from(text),
        ))
    };
    let own = |container: &str| {
        if container == goal_state.container_id {
            Ok(())
        } else {
            Err(WireError::NotFound)
        }
    };
    let vm_id = &vm.definition().id;
    match endpoint {
        Endpoint::Versions => xml(VERSIONS.to_string()),
        Endpoint::GoalState => {
            shared.provisioning().note_goal_state(vm_id);
            xml(goal_state.goal_state())
        }
        Endpoint::Config { container, kind } => {
            own(&container)?;
            xml(match kind {
                Config::HostingEnvironment => goal_state.hosting_environment_config(),
                Config::Shared => goal_state.shared_config(),
                Config::Extensions => goal_state.extensions_config(),
                Config::Full => goal_state.full_config(),
            })
        }
        Endpoint::Certificates { container } => {
            own(&container)?;
            xml(CERTIFICATES.to_string())
        }
        Endpoint::Health => {
            let body = body::read(body, body::REPORT).await?;
            let report = health::from_xml(&body, headers)?;
            record(shared.provisioning(), vm_id, report).await
        }
        Endpoint::ProvisioningHealth => {
            let body = body::read(body, body::REPORT).await?;
            let report = health::from_json(&body, headers)?;
            record(shared.provisioning(), vm_id, report).await
        }
        Endpoint::Telemetry | Endpoint::HealthService | Endpoint::RoleProperties => {
            // Accepted and counted by nobody: the clients only need a 2xx (§6.3, §6.4).
            body::drain(body, body::TELEMETRY).await?;
            Ok(empty(StatusCode::OK))
        }
        Endpoint::StatusBlob { container } => {
            own(&container)?;
            let body = body::read(body, body::STATUS).await?;
            let now = shared.clock().now();
            if let Some(status) = hostplugin::from_status_json(&body, now) {
                shared.provisioning().note_agent_status(vm_id, status);
            }
            // What Azure Storage answers a block-blob PUT (§6.2).
            Ok(empty(StatusCode::CREATED))
        }
    }
}

async fn host_plugin<B>(
    provisioning: &Arc<Provisioning>,
    vm: &ServedVm,
    endpoint: HostPluginEndpoint,
    shared: &Shared,
    body: B,
) -> Result<Response<Body>, WireError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match endpoint {
        // "does not support the vmSettings API": waagent uses ExtensionsConfig (§6.1).
        HostPluginEndpoint::VmSettings | HostPluginEndpoint::ExtensionArtifact => {
            Err(WireError::NotFound)
        }
        HostPluginEndpoint::Versions => Ok(with_body(
            StatusCode::OK,
            CONTENT_TYPE_JSON,
            Bytes::from_static(HOST_PLUGIN_VERSIONS.as_bytes()),
        )),
        HostPluginEndpoint::Health => Ok(empty(StatusCode::OK)),
        HostPluginEndpoint::Status => {
            let body = body::read(body, body::STATUS).await?;
            if let Some(status) = hostplugin::agent_status(&body, shared.clock().now())? {
                provisioning.note_agent_status(&vm.definition().id, status);
            }
            Ok(empty(StatusCode::OK))
        }
        HostPluginEndpoint::VmAgentLog => {
            body::drain(body, body::AGENT_LOG).await?;
            Ok(empty(StatusCode::OK))
        }
    }
}

/// Records a report (off the async threads: it commits to the store) and answers 200 with no
/// body (§5.3) only once it is durable.
async fn record(
    provisioning: &Arc<Provisioning>,
    vm: &str,
    report: Report,
) -> Result<Response<Body>, WireError> {
    let engine = Arc::clone(provisioning);
    let vm_id = vm.to_string();
    let health = report.health;
    let agent = report.agent.clone();
    let recorded = tokio::task::spawn_blocking(move || engine.report(&vm_id, report)).await;
    match recorded {
        Ok(Ok(recorded)) => {
            if recorded.written {
                tracing::info!(vm, ?health, state = recorded.record.state.as_str(), %agent, "guest reported its health");
            }
            Ok(empty(StatusCode::OK))
        }
        Ok(Err(provisioning::Error::Throttled)) => Err(WireError::Throttled),
        Ok(Err(error)) => {
            tracing::error!(vm, %error, "recording a health report failed");
            Err(WireError::Unavailable)
        }
        Err(_) => Err(WireError::Unavailable),
    }
}

/// `http://<host>:<port>` as the guest called it: the `Host` header when it is an IP address
/// (with or without a port), else the address the connection arrived at. Links built on it
/// reach this listener whatever address (or DNAT) the host gave the WireServer.
fn base_url(headers: &http::HeaderMap, caller: Caller) -> String {
    let from_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|host| {
            host.parse::<SocketAddr>().ok().or_else(|| {
                host.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 80))
            })
        });
    let address = from_host
        .or(caller.local)
        .unwrap_or_else(|| SocketAddr::from(([168, 63, 129, 16], 80)));
    format!("http://{address}")
}
