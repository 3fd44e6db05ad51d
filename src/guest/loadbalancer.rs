//! `GET /metadata/loadbalancer` (spec §8): the VM definition's `loadBalancer`, rendered when
//! the definition was checked. This sub-service answers with its own catalogue (§8.4) for
//! every failure of its own, 404 and 405 included, and enforces the length limits its
//! messages name; header and caller failures common to every endpoint keep the general bodies.
//!
//! Order: path, method, caller and throttle, lengths (headers, body), the general headers,
//! query (names, lengths, duplicates), api-version (≥ 2020-10-01), format (JSON only), then
//! what the definition says.

use http::{Method, Request, Response, StatusCode, header};

use crate::guest::error::{GuestError, LB_LIMITS, LoadBalancerError};
use crate::guest::request::{self, Query};
use crate::guest::response::{self, Body, CONTENT_TYPE_JSON};
use crate::metadata::loadbalancer::{Outage, Served};
use crate::metadata::version::ApiVersion;
use crate::snapshot::ServedVm;
use crate::state::Shared;

/// The oldest api-version served (§2.2).
const OLDEST_VERSION: ApiVersion = ApiVersion::V2020_10_01;
/// The parameters this endpoint takes; any other is an "Unexpected request" (§1.5, §8.4).
const PARAMETERS: [&str; 2] = ["api-version", "format"];

/// Why a request failed: a general guest error, or one of the load balancer's own.
enum Refusal {
    Guest(GuestError),
    LoadBalancer(LoadBalancerError),
}

impl From<GuestError> for Refusal {
    fn from(error: GuestError) -> Refusal {
        Refusal::Guest(error)
    }
}

impl From<LoadBalancerError> for Refusal {
    fn from(error: LoadBalancerError) -> Refusal {
        Refusal::LoadBalancer(error)
    }
}

/// Answers a request whose path starts with `/metadata/loadbalancer`; `sub_path` is the rest.
pub(super) fn respond(
    shared: &Shared,
    vm: &ServedVm,
    request: &Request<()>,
    sub_path: &str,
) -> Result<Response<Body>, GuestError> {
    match answer(shared, vm, request, sub_path) {
        Ok(response) => Ok(response),
        Err(Refusal::LoadBalancer(error)) => Ok(error.into_response()),
        Err(Refusal::Guest(error)) => Err(error),
    }
}

fn answer(
    shared: &Shared,
    vm: &ServedVm,
    request: &Request<()>,
    sub_path: &str,
) -> Result<Response<Body>, Refusal> {
    let location = || {
        (
            request.uri().path().to_string(),
            request.method().to_string(),
        )
    };
    if !sub_path.is_empty() && sub_path != "/" {
        let (path, method) = location();
        return Err(LoadBalancerError::ApiNotFound { path, method }.into());
    }
    if request.method() != Method::GET {
        let (path, method) = location();
        return Err(LoadBalancerError::MethodNotAllowed { path, method }.into());
    }
    let bucket = vm.throttle();
    if bucket.is_limited() && !bucket.try_acquire(shared.clock().now()) {
        return Err(LoadBalancerError::Throttled.into());
    }
    check_lengths(request)?;
    request::check_headers(request.headers())?;
    let query = Query::parse(request.uri().query())?;
    check_query(&query)?;
    match query.single("api-version")? {
        None => return Err(LoadBalancerError::MissingParameter("api-version").into()),
        Some(text) if ApiVersion::parse(text).is_some_and(|v| v >= OLDEST_VERSION) => {}
        Some(text) => return Err(not_allowed("api-version", text).into()),
    }
    // §8.3: text is most likely unsupported; insights-core sends format=json.
    if let Some(format) = query.single("format")?
        && !format.eq_ignore_ascii_case("json")
    {
        return Err(not_allowed("format", format).into());
    }
    served(vm)
}

fn served(vm: &ServedVm) -> Result<Response<Body>, Refusal> {
    let outage = match &vm.definition().load_balancer {
        None => LoadBalancerError::NoLoadBalancer,
        Some(Served::Body(body)) => {
            return Ok(response::with_body(
                StatusCode::OK,
                CONTENT_TYPE_JSON,
                body.clone(),
            ));
        }
        Some(Served::Outage(Outage::NotAvailableRightNow)) => {
            LoadBalancerError::NotAvailableRightNow
        }
        Some(Served::Outage(Outage::NotCurrentlyAvailable)) => {
            LoadBalancerError::NotCurrentlyAvailable
        }
        Some(Served::Outage(Outage::ServiceUnavailable)) => LoadBalancerError::ServiceUnavailable,
    };
    Err(outage.into())
}

/// §8.4's length limits on header values and the body (a GET here takes none).
fn check_lengths(request: &Request<()>) -> Result<(), LoadBalancerError> {
    if request
        .headers()
        .values()
        .any(|v| v.len() > LB_LIMITS.header_value)
    {
        return Err(LoadBalancerError::HeaderValueTooLong);
    }
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if chunked || length > LB_LIMITS.body as u64 {
        return Err(LoadBalancerError::BodyTooLong);
    }
    Ok(())
}

/// Parameter names and values within §8.4's limits, known, and each given once.
fn check_query(query: &Query<'_>) -> Result<(), LoadBalancerError> {
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in query.pairs() {
        if name.len() > LB_LIMITS.parameter_key {
            return Err(LoadBalancerError::ParameterKeyTooLong);
        }
        if value.len() > LB_LIMITS.parameter_value {
            return Err(LoadBalancerError::ParameterValueTooLong);
        }
        if !PARAMETERS.contains(&name) || seen.contains(&name) {
            return Err(LoadBalancerError::UnexpectedRequest);
        }
        seen.push(name);
    }
    Ok(())
}

fn not_allowed(name: &str, value: &str) -> LoadBalancerError {
    LoadBalancerError::ValueNotAllowed {
        name: name.into(),
        value: value.into(),
    }
}
