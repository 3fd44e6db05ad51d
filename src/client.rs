//! A minimal HTTP/1.1 client: the control API over TCP or a unix socket (what the CLI uses to
//! drive a running server), and the one-shot JSON POST event hooks make.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::config::ControlAddress;
use crate::control::token::ControlToken;

/// Why a control request could not be made (not: why the server refused it).
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

/// The server's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Bytes,
}

/// Talks to one control listener.
#[derive(Debug)]
pub struct ControlClient {
    address: ControlAddress,
    token: Option<ControlToken>,
}

impl ControlClient {
    pub fn new(address: ControlAddress, token: Option<ControlToken>) -> ControlClient {
        ControlClient { address, token }
    }

    /// Sends one request; `headers` are extra (e.g. `If-Match`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<Reply, Error> {
        let address = format!("the control API at {}", self.address);
        let http_error = |message: String| Error::Http {
            address: address.clone(),
            message,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "azimds");
        if let Some(token) = &self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http_error(e.to_string()))?;
        let connect_error = |source| Error::Connect {
            address: address.clone(),
            source,
        };
        let response = match &self.address {
            ControlAddress::Tcp(socket) => {
                let stream = TcpStream::connect(socket).await.map_err(connect_error)?;
                exchange(TokioIo::new(stream), request).await
            }
            ControlAddress::Unix(path) => {
                let stream = UnixStream::connect(path).await.map_err(connect_error)?;
                exchange(TokioIo::new(stream), request).await
            }
        }
        .map_err(|e| http_error(e.to_string()))?;
        let status = response.status();
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http_error(e.to_string()))?
            .to_bytes();
        Ok(Reply { status, etag, body })
    }
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

async fn exchange<S>(
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
