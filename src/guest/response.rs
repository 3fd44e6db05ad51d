//! Response headers every guest answer carries (spec §1.9): `Content-Type` with charset,
//! `Server` containing `IMDS`, and an `x-ms-request-id` GUID. hyper adds `Date` and the exact
//! `Content-Length` (bodies are never chunked).

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use hyper::body::{Frame, SizeHint};

/// A guest answer's body: complete in memory, or (a truncate fault) the first part of one
/// whose `Content-Length` promises more; hyper then closes the connection mid-body.
#[derive(Debug)]
pub struct Body {
    data: Option<Bytes>,
    truncated: bool,
    /// A truncated body waits one poll after its part, so hyper flushes the part before it
    /// finds the body ended short and closes the connection.
    paused: bool,
}

impl Body {
    pub(super) fn full(data: Bytes) -> Body {
        Body {
            data: Some(data),
            truncated: false,
            paused: false,
        }
    }

    pub(super) fn truncated(part: Bytes) -> Body {
        Body {
            data: Some(part),
            truncated: true,
            paused: false,
        }
    }

    /// The bytes not yet sent (all of them before the body is polled).
    pub(super) fn bytes(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let body = self.get_mut();
        if let Some(data) = body.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if body.truncated && !body.paused {
            body.paused = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        !self.truncated && self.data.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.truncated) {
            // Unknown, so hyper writes the Content-Length the answer states.
            (_, true) => SizeHint::default(),
            (Some(data), false) => SizeHint::with_exact(data.len() as u64),
            (None, false) => SizeHint::with_exact(0),
        }
    }
}

pub(super) const CONTENT_TYPE_JSON: HeaderValue =
    HeaderValue::from_static("application/json; charset=utf-8");
pub(super) const CONTENT_TYPE_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; charset=utf-8");
/// `/metadata/reprovisiondata`'s OVF environment (§9.2: application/xml or text/xml).
pub(super) const CONTENT_TYPE_XML: HeaderValue =
    HeaderValue::from_static("application/xml; charset=utf-8");
/// A DER certificate, as AIA "CA Issuers" URLs serve it (RFC 5280 §4.2.2.1).
pub(super) const CONTENT_TYPE_CERTIFICATE: HeaderValue =
    HeaderValue::from_static("application/pkix-cert");

/// A real build string (§1.9). MSAL.NET checks only that it contains `IMDS`.
const SERVER: HeaderValue = HeaderValue::from_static("IMDS/150.870.65.1854");

/// A response with the headers every guest answer has.
pub(super) fn with_body(
    status: StatusCode,
    content_type: HeaderValue,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(spare) = SPARE_HEADERS.take() {
        // `Response::new`'s map allocated nothing (`HeaderMap::new` does not), so forgetting
        // it leaks nothing and skips its drop.
        std::mem::forget(std::mem::replace(headers, spare));
    }
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::SERVER, SERVER);
    headers.insert(REQUEST_ID, request_id());
    response
}

thread_local! {
    /// The header map of a request this thread finished, emptied, for its next answer: hyper
    /// parses each request into the map of the answer before it, so with this every answer
    /// reuses a map's room and none allocates one.
    static SPARE_HEADERS: Cell<Option<HeaderMap>> = const { Cell::new(None) };
}

/// Keeps a finished request's header map (emptied) for the next answer made on this thread.
pub(super) fn recycle(mut headers: HeaderMap) {
    headers.clear();
    SPARE_HEADERS.set(Some(headers));
}

/// Parsed once, not on every answer as a `&str` name would be.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

/// A random (v4) GUID, lower case and hyphenated as Azure prints them. Not a secret: fastrand
/// is enough.
fn request_id() -> HeaderValue {
    let text = guid_text(fastrand::u128(..));
    let bytes = ID_ROOM.with_borrow_mut(|room| {
        if room.capacity() < text.len() {
            *room = BytesMut::with_capacity(text.len() * IDS_PER_BUFFER);
        }
        room.extend_from_slice(&text);
        room.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).expect("hex digits and hyphens are a valid header value")
}

/// How many request ids share one buffer.
const IDS_PER_BUFFER: usize = 64;

thread_local! {
    /// Room for this thread's next request ids. Each id is cut from a shared buffer, so it
    /// costs a reference count instead of an allocation and a free of its own (about 250
    /// instructions, callgrind); a buffer is freed once its last id's answer is sent.
    static ID_ROOM: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// `random` as a version 4 GUID's text: a table gives each byte's two digits, at places
/// fixed by the hyphens, so the formatting is sixteen lookups.
fn guid_text(random: u128) -> [u8; 36] {
    // RFC 4122 §4.4: version 4 in the high nibble of byte 6, variant 10 in the top bits of
    // byte 8.
    let mut bytes = random.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    // Where each byte's digits start: a hyphen follows bytes 4, 6, 8 and 10.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut text = [b'-'; 36];
    for (byte, at) in bytes.into_iter().zip(AT) {
        text[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    text
}

/// The two lower-case hex digits of every byte.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [HEX[byte >> 4], HEX[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_on_a_recycled_map_has_only_its_own_headers() {
        let mut request = HeaderMap::new();
        request.insert("metadata", HeaderValue::from_static("true"));
        request.insert(header::USER_AGENT, HeaderValue::from_static("curl/8"));
        recycle(request);
        let response = with_body(StatusCode::OK, CONTENT_TYPE_TEXT, Bytes::from_static(b"x"));
        let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type", "server", "x-ms-request-id"]);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE_TEXT);
    }

    #[test]
    fn request_ids_are_lower_case_version_4_guids() {
        let mut seen = std::collections::HashSet::new();
        let mut digits = vec![std::collections::HashSet::new(); 36];
        for _ in 0..1000 {
            let id = request_id();
            for (at, c) in id.as_bytes().iter().enumerate() {
                digits[at].insert(*c);
            }
            let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.to_str().unwrap(), parsed.hyphenated().to_string());
            assert!(seen.insert(parsed), "ids repeat");
        }
        // Every position but the hyphens, the version and the variant's is random.
        for (at, seen) in digits.iter().enumerate() {
            let expected = match at {
                8 | 13 | 18 | 23 | 14 => 1,
                19 => 4,
                _ => 16,
            };
            assert_eq!(seen.len(), expected, "position {at}: {seen:?}");
        }
    }
}
