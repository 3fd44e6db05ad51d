//! Applying a fault rule's decision (`crate::faults`) to a guest request: an injected status
//! with Azure's body for the endpoint, a delay before the usual answer, a stall, a truncated
//! body, or a connection closed with a TCP reset ([`ResetOnDrop`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::faults::Action;
use crate::guest::error::GuestError;
use crate::guest::response::Body;

/// A reset fault took the request: the connection is dropped unanswered, with a reset.
#[derive(Debug, thiserror::Error)]
#[error("a reset fault dropped the connection")]
pub(super) struct Aborted;

/// What happens before the request is routed: `Some` answers it now (an injected status);
/// `None` goes on to the usual answer (after a delay, if that is the action). A stall calls
/// `stalled` (to record it) and never returns: it is dropped when the client gives up or the
/// connection times out.
pub(super) async fn before(
    action: Option<Action>,
    head: &Request<()>,
    stalled: impl FnOnce(),
) -> Option<Result<Response<Body>, GuestError>> {
    match action? {
        Action::Delay(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Action::Stall => {
            stalled();
            std::future::pending().await
        }
        _ => immediate(action, head),
    }
}

/// [`before`] for the actions that do not wait (a delay or stall is `None` here: the caller
/// sends those to `before`).
pub(super) fn immediate(
    action: Option<Action>,
    head: &Request<()>,
) -> Option<Result<Response<Body>, GuestError>> {
    match action? {
        Action::Status(status) => {
            // The identity endpoints answer in their OAuth style (§5.3), whatever the path.
            let identity = head.uri().path().starts_with("/metadata/identity");
            Some(Err(GuestError::injected(status, identity)))
        }
        // Answered (with nothing) in `Exchange::conclude`.
        Action::Reset => Some(Err(GuestError::Internal)),
        Action::Delay(_) | Action::Stall | Action::Truncate => None,
    }
}

/// `response` with its body cut after half, under a `Content-Length` that promises all of it.
pub(super) fn truncate(mut response: Response<Body>) -> Response<Body> {
    let Some(full) = response.body().bytes().cloned().filter(|b| !b.is_empty()) else {
        return response;
    };
    let part: Bytes = full.slice(..full.len() / 2);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len()));
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Body::truncated(part))
}

/// A guest connection's stream, closed with a TCP reset (`SO_LINGER` 0) instead of a FIN
/// when a reset fault aborted it.
pub(super) struct ResetOnDrop {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResetOnDrop {
    pub(super) fn new(stream: TcpStream, reset: Arc<AtomicBool>) -> ResetOnDrop {
        ResetOnDrop { stream, reset }
    }
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed)
            && let Err(error) = self.stream.set_zero_linger()
        {
            tracing::debug!(%error, "could not arm a reset fault's TCP reset");
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
