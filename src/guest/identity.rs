//! `GET /metadata/identity/oauth2/token` (spec §4, §5) and `GET /metadata/identity/info`
//! (§9.1). Everything else under `/metadata/identity` is a 404, including the MSI v2 credential
//! paths (§9.3), so MSAL.NET concludes this is an IMDSv1-only host.
//!
//! Order of checks (after the caller and fault rules in `guest::respond`): identity limits (20/s, 5 concurrent; not the general limit),
//! `X-Forwarded-For`, `Metadata` (identity-style 88-byte body, checked before anything else in
//! the request so header-less SDK probes get a fast 400, §5.6), api-version (general body),
//! parameters, selection, then the token, from cache or freshly signed off the worker thread.

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::guest::error::{GuestError, IdentityError};
use crate::guest::request::{self, Query};
use crate::guest::response::{self, Body, CONTENT_TYPE_JSON};
use crate::identity::limits::Permit;
use crate::identity::selection::{self, Selector};
use crate::identity::token::IssuedToken;
use crate::identity::{Identities, Identity, unix_seconds};
use crate::metadata::version::ApiVersion;
use crate::snapshot::ServedVm;
use crate::state::Shared;

/// The identity endpoints, by the path after `/metadata/identity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    Token,
    Info,
}

impl Endpoint {
    /// `None` for any other path (404), the MSI v2 paths included.
    pub(super) fn from_path(rest: &str) -> Option<Endpoint> {
        match rest.strip_suffix('/').unwrap_or(rest) {
            "/oauth2/token" => Some(Endpoint::Token),
            "/info" => Some(Endpoint::Info),
            _ => None,
        }
    }
}

/// Answers an identity request (after the route and method checks in `guest::route`).
pub(super) async fn respond<B>(
    shared: &Shared,
    vm: &ServedVm,
    request: &Request<B>,
    endpoint: Endpoint,
) -> Result<Response<Body>, GuestError> {
    let _permit = admit(shared, vm)?;
    let query = checked_query(request)?;
    let identities = vm.definition().identities.as_ref();
    match endpoint {
        Endpoint::Info => info(identities),
        Endpoint::Token => token(shared, vm, identities, &query).await,
    }
}

/// An admission under the caller's identity limits (not the general limit).
fn admit(shared: &Shared, vm: &ServedVm) -> Result<Permit, GuestError> {
    let permit = shared
        .identity_limiters()
        .get(&vm.definition().id)
        .try_enter(shared.clock().now())
        .ok_or(IdentityError::Throttled)?;
    Ok(permit)
}

/// Headers, then the query with an identity api-version (≥ 2018-02-01) and no duplicates.
pub(super) fn checked_query<B>(request: &Request<B>) -> Result<Query<'_>, GuestError> {
    let fail = GuestError::on_identity_endpoint;
    request::check_headers(request.headers()).map_err(fail)?;
    let query = Query::parse(request.uri().query()).map_err(fail)?;
    let version = query.api_version()?;
    if version < ApiVersion::V2018_02_01 {
        return Err(GuestError::ApiVersion);
    }
    query.reject_duplicates().map_err(fail)?;
    Ok(query)
}

/// `/metadata/identity/info` (§9.1): the tenant of a VM that has an identity.
fn info(identities: Option<&Identities>) -> Result<Response<Body>, GuestError> {
    let identities = identities
        .filter(|ids| ids.all().next().is_some())
        .ok_or(IdentityError::IdentityNotFound)?;
    let body = serde_json::json!({ "tenantId": identities.tenant_id }).to_string();
    Ok(json(Bytes::from(body)))
}

/// `/metadata/identity/oauth2/token` (§4.2): the selected identity's token for `resource`,
/// cached or freshly signed.
async fn token(
    shared: &Shared,
    vm: &ServedVm,
    identities: Option<&Identities>,
    query: &Query<'_>,
) -> Result<Response<Body>, GuestError> {
    let asked = token_request(query, identities)?;
    let tenant_id = identities.map_or("", |ids| ids.tenant_id.as_str());
    let vm_id = &vm.definition().id;
    let now = shared.clock().now();
    let token = shared
        .issuer()
        .token(
            vm_id,
            tenant_id,
            asked.identity,
            asked.resource,
            now,
            asked.bypass_cache,
        )
        .await
        .map_err(|error| {
            tracing::error!(vm = %vm_id, %error, "token signing failed");
            IdentityError::ServerError
        })?;
    Ok(json(token_body(&token, unix_seconds(now))))
}

/// What a token request asks for, once its parameters are checked and its identity selected.
#[derive(Debug)]
pub(super) struct TokenRequest<'q, 'i> {
    /// Never empty.
    pub(super) resource: &'q str,
    pub(super) identity: &'i Identity,
    pub(super) bypass_cache: bool,
}

/// The token endpoint's parameters (§4.2) after [`checked_query`]: `resource`, at most one
/// selector, `bypass_cache`, then the identity they select among `identities`.
pub(super) fn token_request<'q, 'i>(
    query: &'q Query<'_>,
    identities: Option<&'i Identities>,
) -> Result<TokenRequest<'q, 'i>, GuestError> {
    let fail = GuestError::on_identity_endpoint;
    let resource = query
        .single("resource")
        .map_err(fail)?
        .filter(|r| !r.is_empty())
        .ok_or(IdentityError::MissingResource)?;
    let selector = selector(query)?;
    let bypass_cache = bypass_cache(query)?;
    let identity = selection::select(identities, selector).map_err(|e| match e {
        selection::Error::NotFound => IdentityError::IdentityNotFound,
        selection::Error::Ambiguous => IdentityError::MultipleUserAssigned,
    })?;
    Ok(TokenRequest {
        resource,
        identity,
        bypass_cache,
    })
}

fn bypass_cache(query: &Query<'_>) -> Result<bool, GuestError> {
    match query
        .single("bypass_cache")
        .map_err(GuestError::on_identity_endpoint)?
    {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(IdentityError::BadBypassCache.into()),
    }
}

/// `client_id`, `object_id`, or `msi_res_id` (also spelled `mi_res_id`, and `msi-res-id` by
/// .NET's probe, §4.2); more than one is an error. An empty value counts as not given.
fn selector<'q>(query: &'q Query<'_>) -> Result<Option<Selector<'q>>, GuestError> {
    let fail = GuestError::on_identity_endpoint;
    let mut found = None;
    for (name, make) in [
        (
            "client_id",
            Selector::ClientId as fn(&'q str) -> Selector<'q>,
        ),
        ("object_id", Selector::ObjectId),
        ("msi_res_id", Selector::ResourceId),
        ("mi_res_id", Selector::ResourceId),
        ("msi-res-id", Selector::ResourceId),
    ] {
        if let Some(value) = query.single(name).map_err(fail)?.filter(|v| !v.is_empty()) {
            if found.is_some() {
                return Err(IdentityError::ConflictingSelectors.into());
            }
            found = Some(make(value));
        }
    }
    Ok(found)
}

/// The success body (spec §5.1): the real key set in alphabetical order, every value a string,
/// compact; `expires_in` is what is left at `now`.
fn token_body(token: &IssuedToken, now: u64) -> Bytes {
    let resource = serde_json::to_string(&token.resource).expect("a string serializes");
    let mut body = String::with_capacity(token.access_token.len() + resource.len() + 220);
    // access_token (base64url and dots) and client_id (a GUID) need no JSON escaping.
    body.push_str(r#"{"access_token":""#);
    body.push_str(&token.access_token);
    body.push_str(r#"","client_id":""#);
    body.push_str(&token.client_id);
    body.push_str(&format!(
        r#"","expires_in":"{}","expires_on":"{}","ext_expires_in":"{}","not_before":"{}","resource":{resource},"token_type":"Bearer"}}"#,
        token.expires_in(now),
        token.expires_on,
        token.lifetime,
        token.not_before,
    ));
    Bytes::from(body)
}

fn json(body: Bytes) -> Response<Body> {
    response::with_body(StatusCode::OK, CONTENT_TYPE_JSON, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path() {
        assert_eq!(Endpoint::from_path("/oauth2/token"), Some(Endpoint::Token));
        assert_eq!(Endpoint::from_path("/oauth2/token/"), Some(Endpoint::Token));
        assert_eq!(Endpoint::from_path("/info"), Some(Endpoint::Info));
        assert_eq!(Endpoint::from_path("/getplatformmetadata"), None);
        assert_eq!(Endpoint::from_path("/issuecredential"), None);
        assert_eq!(Endpoint::from_path(""), None);
    }

    #[test]
    fn token_body_is_alphabetical_strings_counting_down() {
        let token = IssuedToken {
            access_token: "a.b.c".into(),
            client_id: "11111111-1111-4111-8111-111111111111".into(),
            resource: "https://x/\"q\"".into(),
            not_before: 1_699_999_700,
            expires_on: 1_700_086_400,
            issued: 1_700_000_000,
            lifetime: 86_400,
        };
        assert_eq!(
            token_body(&token, 1_700_000_083),
            Bytes::from_static(
                br#"{"access_token":"a.b.c","client_id":"11111111-1111-4111-8111-111111111111","expires_in":"86317","expires_on":"1700086400","ext_expires_in":"86400","not_before":"1699999700","resource":"https://x/\"q\"","token_type":"Bearer"}"#
            )
        );
    }
}
