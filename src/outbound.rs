//! HTTP/1.1 requests azimds makes itself: one request per connection, over any stream. The
//! CLI's control client and the event hooks' POSTs both go through [`exchange`]. A leaf
//! module: it knows nothing of the control API or the events engine.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request could not be made (not: why the server refused it).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("{address}: {message}")]
    Http { address: String, message: String },
}

/// POSTs `body` as JSON to an `http://host[:port]/path` URL; returns the status.
pub async fn post_json(url: &str, body: Vec<u8>) -> Result<StatusCode, Error> {
    let http_error = |message: String| Error::Http {
        address: url.to_string(),
        message,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| http_error(format!("bad URL: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| http_error("the URL has no host".into()))?
        .clone();
    let stream = TcpStream::connect((authority.host(), authority.port_u16().unwrap_or(80)))
        .await
        .map_err(|source| Error::Connect {
            address: authority.to_string(),
            source,
        })?;
    let request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| http_error(e.to_string()))?;
    let response = exchange(TokioIo::new(stream), request)
        .await
        .map_err(|e| http_error(e.to_string()))?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// Sends one request on `io` and returns the response head and body stream.
pub async fn exchange<S>(
    io: TokioIo<S>,
    request: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}
