//! A connection that makes no progress is closed: [`StallGuard`] wraps a stream and fails a
//! read that has waited longer than its read limit, or a write (a client that stopped reading
//! its answer) longer than its write limit, with `TimedOut`. hyper then drops the connection,
//! and with it the connection's place under the caps.
//!
//! Cheap on the hot path, where a keep-alive request waits once for its next read: a wait
//! only sets a flag. One timer per connection ticks every [`StallLimits::tick`]; at a tick, a
//! direction that has been waiting since the previous tick without progress earns a strike
//! (each strike is a whole tick of waiting), and enough strikes in a row to cover its limit
//! fail it. A stall is therefore detected between its limit and two ticks later.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::connections::head_limit::{HeadLimit, HeadWatch};

/// How long a read or a write may wait without progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StallLimits {
    pub read: Duration,
    pub write: Duration,
}

impl StallLimits {
    /// The timer's period: a quarter of the shorter limit, so a stall is caught within 1.5
    /// limits.
    pub fn tick(&self) -> Duration {
        (self.read.min(self.write) / 4).max(Duration::from_millis(10))
    }
}

/// One direction's progress, as seen at the ticks.
#[derive(Debug)]
struct Direction {
    waiting: bool,
    waiting_at_tick: bool,
    progress: u64,
    progress_at_tick: u64,
    strikes: u32,
    strikes_allowed: u32,
}

impl Direction {
    fn new(limit: Duration, tick: Duration) -> Direction {
        Direction {
            waiting: false,
            waiting_at_tick: false,
            progress: 0,
            progress_at_tick: 0,
            strikes: 0,
            strikes_allowed: limit.as_millis().div_ceil(tick.as_millis().max(1)) as u32,
        }
    }

    fn made_progress(&mut self) {
        self.waiting = false;
        self.progress = self.progress.wrapping_add(1);
    }

    /// At a tick: whether this direction has now been stalled past its limit.
    fn stalled_at_tick(&mut self) -> bool {
        let waited_whole_tick =
            self.waiting && self.waiting_at_tick && self.progress == self.progress_at_tick;
        if waited_whole_tick {
            self.strikes += 1;
        } else {
            self.strikes = 0;
        }
        self.waiting_at_tick = self.waiting;
        self.progress_at_tick = self.progress;
        self.strikes >= self.strikes_allowed
    }
}

/// `inner` with stall limits on both directions.
pub struct StallGuard<S> {
    inner: S,
    /// Boxed so the guard is `Unpin` (hyper wants that of its IO); one allocation per
    /// connection.
    timer: Pin<Box<Sleep>>,
    tick: Duration,
    /// The waker the timer was last registered with; `None` when it must be polled again.
    registered: Option<Waker>,
    read: Direction,
    write: Direction,
    /// The request-head limit, on guest connections ([`StallGuard::with_head_limit`]).
    head: Option<HeadLimit>,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, limits: StallLimits) -> StallGuard<S> {
        let tick = limits.tick();
        StallGuard {
            inner,
            timer: Box::pin(tokio::time::sleep(tick)),
            tick,
            registered: None,
            read: Direction::new(limits.read, tick),
            write: Direction::new(limits.write, tick),
            head: None,
        }
    }

    /// Also fails a read that waits for a request head longer than `timeout`; the service
    /// calls `watch`'s [`HeadWatch::arrived`] for every request (see `head_limit`).
    pub fn with_head_limit(mut self, timeout: Duration, watch: Arc<HeadWatch>) -> StallGuard<S> {
        self.head = Some(HeadLimit::new(timeout, watch));
        self
    }

    /// Called whenever a direction waits: settles a tick that has passed, and keeps the timer
    /// registered with the current task.
    fn on_wait(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.timer.is_elapsed() {
            // Both directions are judged at every tick, so neither's strikes go stale.
            let read_stalled = self.read.stalled_at_tick();
            let write_stalled = self.write.stalled_at_tick();
            if read_stalled || write_stalled {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer made no progress",
                ));
            }
            if self.head.as_mut().is_some_and(HeadLimit::expired) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request head took too long",
                ));
            }
            self.timer.as_mut().reset(Instant::now() + self.tick);
            self.registered = None;
        }
        let current = self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if !current {
            let _ = self.timer.as_mut().poll(cx);
            self.registered = Some(cx.waker().clone());
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(head) = &mut this.head {
            head.before_read();
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read.made_progress();
                Poll::Ready(result)
            }
            Poll::Pending => {
                this.read.waiting = true;
                this.on_wait(cx)?;
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
                self.write.made_progress();
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.write.waiting = true;
                self.on_wait(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<S> StallGuard<S> {
    /// Bytes of an answer went out (a flush, which hyper makes with nothing to write too,
    /// does not count): the head limit's next read waits for the next head.
    fn note_written(&mut self, written: &Poll<io::Result<usize>>) {
        if let (Poll::Ready(Ok(1..)), Some(head)) = (written, &mut self.head) {
            head.after_write();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = this.poll_writing(cx, |inner, cx| inner.poll_write(cx, buf));
        this.note_written(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = this.poll_writing(cx, |inner, cx| inner.poll_write_vectored(cx, bufs));
        this.note_written(&written);
        written
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
        // Progress every 25 s keeps a 30 s read limit from firing.
        for _ in 0..3 {
            let read = tokio::spawn(async move {
                let n = guarded.read(&mut buf).await.map(|_| ());
                (guarded, n)
            });
            tokio::time::sleep(Duration::from_secs(25)).await;
            theirs.write_all(b"x").await.unwrap();
            let (back, result) = read.await.unwrap();
            result.unwrap();
            guarded = back;
        }
        let started = Instant::now();
        let error = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= LIMITS.read && waited <= LIMITS.read + 2 * LIMITS.tick(),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_fails_the_write() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(ours, LIMITS);
        let started = Instant::now();
        let error = guarded.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= LIMITS.write && waited <= LIMITS.write + 2 * LIMITS.tick(),
            "{waited:?}"
        );
    }
}
