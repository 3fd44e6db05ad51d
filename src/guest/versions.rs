//! `GET /metadata/versions` (spec §2.3): every supported api-version, ascending. No
//! api-version needed; `Metadata: true` still is.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::guest::response::{self, Body, CONTENT_TYPE_JSON};
use crate::metadata::version::ApiVersion;

static BODY: LazyLock<Bytes> = LazyLock::new(|| {
    let versions: Vec<&str> = ApiVersion::all().map(ApiVersion::as_str).collect();
    let body = serde_json::json!({ "apiVersions": versions });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"))
});

pub(super) fn get() -> Response<Body> {
    response::with_body(StatusCode::OK, CONTENT_TYPE_JSON, BODY.clone())
}
