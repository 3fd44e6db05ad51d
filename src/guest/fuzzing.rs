//! The guest plane's request rules without a server, for the fuzz targets (cargo feature
//! `fuzzing`; re-exported by the top-level `fuzzing` module, not a stable API): the token
//! endpoint's query and identity selection (§4.2), the attested document's query (§7.1) with
//! the content it signs, and the scheduled-events `StartRequests` body (§6.4). Each calls the
//! function the guest plane answers with, not a copy of it.

use std::time::SystemTime;

use http::{Request, Uri};

use crate::attested::{AttestedVm, signed_content};
use crate::guest::error::GuestError;
use crate::guest::request::Query;
use crate::guest::{attested, identity, scheduled};
use crate::identity::{Identities, Identity};

/// What a token request selects, after every check the token endpoint makes before signing.
#[derive(Debug)]
pub struct TokenChoice<'i> {
    /// Never empty.
    pub resource: String,
    pub identity: &'i Identity,
    pub bypass_cache: bool,
}

/// The token endpoint's checks on `raw_query` (the text after `?`), sent with `Metadata: true`
/// as clients send it, against `identities`: the choice, or the error the guest is answered.
/// `None` when `raw_query` would not reach the guest plane (hyper refuses the URI).
pub fn token_query<'i>(
    raw_query: &str,
    identities: Option<&'i Identities>,
) -> Option<Result<TokenChoice<'i>, GuestError>> {
    let request = request_with_query("/metadata/identity/oauth2/token", raw_query)?;
    Some(identity::checked_query(&request).and_then(|query| {
        let asked = identity::token_request(&query, identities)?;
        Ok(TokenChoice {
            resource: asked.resource.to_string(),
            identity: asked.identity,
            bypass_cache: asked.bypass_cache,
        })
    }))
}

/// The attested document's checks on `raw_query`, then the compact JSON that would be signed
/// for `vm` at `now`, or the error the guest is answered. `None` as for [`token_query`].
pub fn attested_query(
    raw_query: &str,
    vm: &AttestedVm<'_>,
    now: SystemTime,
) -> Option<Result<Vec<u8>, GuestError>> {
    let request = request_with_query("/metadata/attested/document", raw_query)?;
    let checked = Query::parse(request.uri().query()).and_then(|q| attested::checked_query(&q));
    Some(checked.map(|(version, nonce)| signed_content(vm, version, nonce.as_ref(), now)))
}

/// The event ids a scheduled-events POST body approves; `None` answers 400.
pub fn start_requests(body: &[u8]) -> Option<Vec<String>> {
    scheduled::start_requests(body)
}

fn request_with_query(path: &str, raw_query: &str) -> Option<Request<()>> {
    let uri = Uri::try_from(format!("{path}?{raw_query}")).ok()?;
    Request::get(uri).header("Metadata", "true").body(()).ok()
}
