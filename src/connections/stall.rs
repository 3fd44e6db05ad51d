//! A connection that makes no progress is closed: [`StallGuard`] wraps a stream and fails a
//! read that has waited longer than its read limit, or a write (a client that stopped reading
//! its answer) longer than its write limit, with `TimedOut`. hyper then drops the connection,
//! and with it the connection's place under the caps.
//!
//! Cheap on the hot path: one timer per connection, re-armed only when it fires early, so a
//! keep-alive request costs a clock read when a read or write first waits, not a timer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a read or a write may wait without progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StallLimits {
    pub read: Duration,
    pub write: Duration,
}

/// `inner` with stall limits on both directions.
pub struct StallGuard<S> {
    inner: S,
    /// Boxed so the guard is `Unpin` (hyper wants that of its IO); one allocation per
    /// connection.
    timer: Pin<Box<Sleep>>,
    limits: StallLimits,
    // When the current wait of each direction began; `None` while it is not waiting.
    read_waiting_since: Option<Instant>,
    write_waiting_since: Option<Instant>,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, limits: StallLimits) -> StallGuard<S> {
        StallGuard {
            inner,
            timer: Box::pin(tokio::time::sleep(limits.read.max(limits.write))),
            limits,
            read_waiting_since: None,
            write_waiting_since: None,
        }
    }
}

/// Called when a direction is waiting: `Err(TimedOut)` once its wait exceeds `limit`, else
/// makes sure the timer wakes the task no later than the deadline.
fn check_stall(
    mut timer: Pin<&mut Sleep>,
    since: &mut Option<Instant>,
    limit: Duration,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    let now = Instant::now();
    let deadline = *since.get_or_insert(now) + limit;
    if now >= deadline {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer made no progress",
        ));
    }
    // An armed timer due before the deadline wakes us early and we check again; only a
    // timer due later, or spent, must be moved.
    if timer.deadline() > deadline || timer.is_elapsed() {
        timer.as_mut().reset(deadline);
    }
    let _ = timer.poll(cx);
    Ok(())
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read_waiting_since = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                check_stall(
                    this.timer.as_mut(),
                    &mut this.read_waiting_since,
                    this.limits.read,
                    cx,
                )?;
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> StallGuard<S> {
    fn poll_writing<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_waiting_since = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                check_stall(
                    self.timer.as_mut(),
                    &mut self.write_waiting_since,
                    self.limits.write,
                    cx,
                )?;
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_writing(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_writing(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_writing(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_writing(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LIMITS: StallLimits = StallLimits {
        read: Duration::from_secs(30),
        write: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(ours, LIMITS);
        let mut buf = [0u8; 8];
        // Progress every 20 s keeps a 30 s read limit from firing.
        for _ in 0..3 {
            let read = tokio::spawn(async move {
                let n = guarded.read(&mut buf).await.map(|_| ());
                (guarded, n)
            });
            tokio::time::sleep(Duration::from_secs(20)).await;
            theirs.write_all(b"x").await.unwrap();
            let (back, result) = read.await.unwrap();
            result.unwrap();
            guarded = back;
        }
        let started = Instant::now();
        let error = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMITS.read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_fails_the_write() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(ours, LIMITS);
        let started = Instant::now();
        let error = guarded.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMITS.write);
    }
}
