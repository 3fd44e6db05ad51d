//! `GET /metadata/instance[/…]` (spec §1.7, §3): the VM's document shaped for the requested
//! api-version, walked by the sub-path, as JSON or text.

use http::{Response, StatusCode};

use crate::guest::error::GuestError;
use crate::guest::request::{self, Format, Query};
use crate::guest::response::{self, Body, CONTENT_TYPE_JSON, CONTENT_TYPE_TEXT};
use crate::snapshot::ServedVm;

pub(super) fn get(
    vm: &ServedVm,
    query: &Query<'_>,
    sub_path: &str,
) -> Result<Response<Body>, GuestError> {
    let version = query.api_version()?;
    query.reject_duplicates()?;
    let format = query.format()?;
    let extended = query.extended()?;
    let segments = request::path_segments(sub_path)?;
    if segments.is_empty() && format == Format::Json {
        // The whole document: no index needed.
        let body = vm.document(version, extended);
        return Ok(response::with_body(StatusCode::OK, CONTENT_TYPE_JSON, body));
    }
    let document = vm.indexed(version, extended);
    let node = document.find(segments.iter()).ok_or(GuestError::NotFound)?;
    match format {
        Format::Text => Ok(response::with_body(
            StatusCode::OK,
            CONTENT_TYPE_TEXT,
            document.text(node),
        )),
        Format::Json if node.is_leaf() => Err(GuestError::LeafRequiresText),
        Format::Json => Ok(response::with_body(
            StatusCode::OK,
            CONTENT_TYPE_JSON,
            document.json(node),
        )),
    }
}
