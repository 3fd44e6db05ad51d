//! The control API's client, over TCP or a unix socket: what the CLI uses to drive a running
//! server.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::config::ControlAddress;
use crate::control::token::ControlToken;
pub use crate::outbound::Error;
use crate::outbound::exchange;

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
