//! Runs `azure_identity::ManagedIdentityCredential`, unmodified, against whatever answers at
//! 169.254.169.254 (azimds, inside the client suite's network namespace), and prints what it
//! got as JSON: `azimds-rust-identity-probe OUT.json [client_id|object_id|resource_id=VALUE]...`
//!
//! The only thing supplied from outside the SDK is the transport: a plain HTTP/1.1 client over
//! a TCP socket, given through `ClientOptions.transport` (the SDK's hook for custom HTTP
//! stacks), so the crate builds without reqwest and TLS. The URL, query, headers and parsing of
//! the answer are the SDK's own.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::headers::Headers;
use azure_core::http::{AsyncRawResponse, ClientOptions, HttpClient, Request, StatusCode, Transport};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
struct PlainHttp;

#[async_trait::async_trait]
impl HttpClient for PlainHttp {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url();
        let host = url.host_str().unwrap_or("169.254.169.254");
        let port = url.port_or_known_default().unwrap_or(80);
        let mut target = url.path().to_string();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let mut head = format!("{} {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n", request.method());
        for (name, value) in request.headers().iter() {
            head.push_str(&format!("{}: {}\r\n", name.as_str(), value.as_str()));
        }
        head.push_str("\r\n");
        let io = |e: std::io::Error| azure_core::Error::new(azure_core::error::ErrorKind::Io, e);
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.map_err(io)?;
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(io)?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| io(std::io::Error::other("no HTTP response head")))?;
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io(std::io::Error::other("bad status line")))?;
        let mut headers = Headers::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        Ok(AsyncRawResponse::from_bytes(StatusCode::from(status), headers, answer[split + 4..].to_vec()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: azimds-rust-identity-probe OUT.json [kind=value]...");
    let mut cases = vec![("system".to_string(), None)];
    for arg in args {
        let (kind, value) = arg.split_once('=').expect("kind=value");
        let id = match kind {
            "client_id" => UserAssignedId::ClientId(value.into()),
            "object_id" => UserAssignedId::ObjectId(value.into()),
            "resource_id" => UserAssignedId::ResourceId(value.into()),
            other => panic!("unknown selector kind {other}"),
        };
        cases.push((kind.to_string(), Some(id)));
    }
    let mut results = serde_json::Map::new();
    for (name, id) in cases {
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: id,
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(PlainHttp))),
                ..ClientOptions::default()
            },
            ..ManagedIdentityCredentialOptions::default()
        };
        let credential = ManagedIdentityCredential::new(Some(options)).expect("credential");
        let result = match credential.get_token(&["https://management.azure.com/.default"], None).await {
            Ok(token) => serde_json::json!({
                "token": token.token.secret(),
                "expires_on": token.expires_on.unix_timestamp(),
            }),
            Err(error) => serde_json::json!({ "error": error.to_string() }),
        };
        results.insert(name, result);
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&results).unwrap()).expect("write the output");
}
