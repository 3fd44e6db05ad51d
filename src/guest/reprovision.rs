//! `GET /metadata/reprovisiondata` (spec §9.2): what a VM of a pre-provisioned pool polls
//! until it is assigned to a customer. 404 until an operator assigns the VM an OVF
//! environment (`azimds vm assign`), then 200 with that XML. cloud-init polls on 404 and 410
//! and takes the first 2xx with a body.

use http::{Response, StatusCode};

use crate::guest::error::GuestError;
use crate::guest::request::Query;
use crate::guest::response::{self, Body, CONTENT_TYPE_XML};
use crate::metadata::version::ApiVersion;
use crate::snapshot::ServedVm;

/// The oldest api-version served: the one cloud-init sends (§2.2); older ones get the
/// api-version error.
const OLDEST_VERSION: ApiVersion = ApiVersion::V2019_06_01;

pub(super) fn get(vm: &ServedVm, query: &Query<'_>) -> Result<Response<Body>, GuestError> {
    if query.api_version()? < OLDEST_VERSION {
        return Err(GuestError::ApiVersion);
    }
    query.reject_duplicates()?;
    let data = vm
        .definition()
        .reprovision_data
        .clone()
        .ok_or(GuestError::NotAssigned)?;
    Ok(response::with_body(StatusCode::OK, CONTENT_TYPE_XML, data))
}
