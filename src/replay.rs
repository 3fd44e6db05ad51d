//! `azimds replay DIR`: serves a fixture pack ([`crate::capture::pack`]) byte for byte. A
//! request gets the recorded answer of the same method, path, query parameters (in any order)
//! and `Metadata: true` presence: the recorded status, headers (but `Date` and
//! `Content-Length`, computed per answer) and body bytes. A sub-path of a recorded instance
//! document (`/metadata/instance/compute?api-version=…`, a leaf with `format=text`) is cut
//! from that document as Azure cuts it (spec §1.7: the compact sub-tree, a leaf's raw value).
//! Anything else gets what the service
//! answered to the same kind of mistake when it was captured: a request without the
//! `Metadata` header the recorded "no metadata header" answer (identity's own for
//! `/metadata/identity/…`), any other the recorded "not found" answer, else a plain 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::capture::json::Json;
use crate::capture::pack::{COMPUTED_HEADERS, Pack};

/// How long a connection may take to send a request head.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A pack indexed by request.
#[derive(Debug)]
pub struct Replay {
    pack: Pack,
    by_request: HashMap<Key, usize>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    method: String,
    path: String,
    query: Vec<String>,
    metadata: bool,
}

impl Key {
    fn new(method: &str, target: &str, metadata: bool) -> Key {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut query: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        query.sort();
        Key {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query,
            metadata,
        }
    }
}

impl Replay {
    /// Indexes `pack`; of two recordings of the same request, the first is served.
    pub fn new(pack: Pack) -> Replay {
        let mut by_request = HashMap::new();
        for (index, recorded) in pack.manifest.responses.iter().enumerate() {
            let request = &recorded.request;
            by_request
                .entry(Key::new(&request.method, &request.target, request.metadata))
                .or_insert(index);
        }
        Replay { pack, by_request }
    }

    /// How many responses the pack holds.
    pub fn len(&self) -> usize {
        self.pack.bodies.len()
    }

    /// Whether the pack holds no response.
    pub fn is_empty(&self) -> bool {
        self.pack.bodies.is_empty()
    }

    /// The answer to a request with this method, target (path and query) and headers.
    pub fn answer(
        &self,
        method: &str,
        target: &str,
        headers: &http::HeaderMap,
    ) -> Response<Full<Bytes>> {
        let metadata = headers.get_all("metadata").iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        });
        let exact = self.by_request.get(&Key::new(method, target, metadata));
        let fallback = || {
            let path = target.split('?').next().unwrap_or("");
            let name = match (metadata, path.starts_with("/metadata/identity")) {
                (false, true) => "errors/identity-no-metadata-header",
                (false, false) => "errors/no-metadata-header",
                (true, _) => "errors/not-found",
            };
            self.pack
                .manifest
                .responses
                .iter()
                .position(|r| r.name == name)
        };
        if exact.is_none()
            && metadata
            && let Some(answer) = self.sub_path(method, target)
        {
            return answer;
        }
        match exact.copied().or_else(fallback) {
            Some(index) => self.recorded(index),
            None => {
                let mut response =
                    Response::new(Full::new(Bytes::from_static(br#"{"error":"Not found"}"#)));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                response
            }
        }
    }

    /// A sub-path of a recorded instance document, if the request names one (GET, an
    /// api-version whose document was recorded with a 200).
    fn sub_path(&self, method: &str, target: &str) -> Option<Response<Full<Bytes>>> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let rest = path.strip_prefix("/metadata/instance/")?;
        if method != "GET" {
            return None;
        }
        let parameter = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        let version = parameter("api-version")?;
        let suffix = if parameter("extended") == Some("true") {
            "-extended"
        } else {
            ""
        };
        let name = format!("instance/{version}{suffix}");
        let index = self
            .pack
            .manifest
            .responses
            .iter()
            .position(|r| r.name == name && r.status == 200)?;
        let mut node = Json::parse(&self.pack.bodies[index])?;
        for segment in rest.trim_end_matches('/').split('/') {
            let segment = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()?;
            node = match node {
                Json::Object(members) => members.into_iter().find(|(k, _)| *k == segment)?.1,
                Json::Array(items) => items.into_iter().nth(segment.parse().ok()?)?,
                _ => return None,
            };
        }
        let text = parameter("format") == Some("text");
        let body = match (&node, text) {
            (Json::Object(_) | Json::Array(_), false) => node.to_bytes(),
            (Json::Object(_) | Json::Array(_), true) => return None,
            (Json::String(value), true) => value.clone().into_bytes(),
            (_, true) => node.to_bytes(),
            (_, false) => {
                // A leaf needs format=text: the service's own refusal, as recorded.
                let refusal = self.pack.get_index("errors/leaf-without-format")?;
                return Some(self.recorded(refusal));
            }
        };
        let mut response = self.recorded(index);
        *response.body_mut() = Full::new(Bytes::from(body));
        if text {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        Some(response)
    }

    fn recorded(&self, index: usize) -> Response<Full<Bytes>> {
        let recorded = &self.pack.manifest.responses[index];
        let mut response = Response::new(Full::new(self.pack.bodies[index].clone()));
        *response.status_mut() =
            StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in &recorded.headers {
            if COMPUTED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// Serves `replay` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, replay: Arc<Replay>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "replay: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let replay = Arc::clone(&replay);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let response = replay.answer(request.method().as_str(), &target, request.headers());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}
