//! `GET /metadata/attested/document` (spec §7): the VM's facts signed in Azure's CMS envelope,
//! off the async workers and under the VM's own attested limits; and `GET
//! /metadata/attested/ca.cer`, the issuing CA (DER) that generated leaves name as their AIA
//! "CA Issuers" URL, so a relying party inside the guest can build the chain as Microsoft's
//! samples do.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::attested::{self, InstanceFacts, Nonce};
use crate::guest::error::GuestError;
use crate::guest::request::{Format, Query};
use crate::guest::response::{self, Body, CONTENT_TYPE_CERTIFICATE, CONTENT_TYPE_JSON};
use crate::metadata::version::ApiVersion;
use crate::snapshot::ServedVm;
use crate::state::Shared;

/// Checks the request (§2.2 version gate, §7.1 nonce), then signs on a blocking thread.
pub(super) async fn document(
    shared: &Shared,
    vm: Arc<ServedVm>,
    query: &Query<'_>,
) -> Result<Response<Body>, GuestError> {
    let (version, nonce) = checked_query(query)?;
    let now = shared.clock().now();
    // Held until the signature is made: the concurrency limit counts signatures in flight.
    let _permit = shared
        .attested_limiters()
        .get(&vm.definition().id)
        .try_enter(now)
        .ok_or(GuestError::Throttled)?;
    let signer = Arc::clone(shared.attested());
    let signing_vm = Arc::clone(&vm);
    let signed = tokio::task::spawn_blocking(move || {
        let facts = InstanceFacts::parse(signing_vm.definition().instance.compact_json())
            .map_err(|error| format!("reading the VM's facts: {error}"))?;
        signer
            .document(&facts.attested(), version, nonce.as_ref(), now)
            .map_err(|error| error.to_string())
    })
    .await;
    match signed {
        Ok(Ok(body)) => Ok(response::with_body(
            StatusCode::OK,
            CONTENT_TYPE_JSON,
            Bytes::from(body),
        )),
        Ok(Err(error)) => {
            tracing::error!(vm = %vm.definition().id, %error, "attested document signing failed");
            Err(GuestError::Internal)
        }
        Err(_) => Err(GuestError::Internal),
    }
}

/// The api-version (§2.2's gate) and the nonce (§7.1) a document request asks for.
pub(super) fn checked_query(query: &Query<'_>) -> Result<(ApiVersion, Option<Nonce>), GuestError> {
    let version = query.api_version()?;
    if !attested::accepts(version) {
        return Err(GuestError::ApiVersion);
    }
    query.reject_duplicates()?;
    if query.format()? != Format::Json {
        return Err(GuestError::JsonOnly);
    }
    // §7.1: 1 to 32 letters and digits; `nonce=` with nothing after it is refused too.
    let nonce = match query.single("nonce")? {
        None => None,
        Some(text) => Some(Nonce::parse(text).map_err(|_| GuestError::BadNonce)?),
    };
    Ok((version, nonce))
}

/// The certificate that issued the signing leaves, DER. Public material: certificate tooling
/// fetches AIA URLs without a `Metadata` header or api-version, so neither is asked for, and
/// the query is ignored (IMDSSample.py appends a newline to the URL, which lands there).
pub(super) fn issuer(shared: &Shared) -> Response<Body> {
    response::with_body(
        StatusCode::OK,
        CONTENT_TYPE_CERTIFICATE,
        Bytes::from(shared.attested().issuer_der()),
    )
}
