//! ETags of stored VMs: the one place a revision becomes a header value.

/// The ETag of a stored revision: a quoted strong validator. Revisions are never reused, so
/// a recreated VM never matches an old ETag.
pub(super) fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}
