//! hyper's header-read timeout without a timer per request. hyper arms its `Timer` for every
//! request head it reads and drops it once the head is parsed; with hyper-util's `TokioTimer`
//! that is a boxed `tokio::time::Sleep` registered in and removed from tokio's timer wheel per
//! request, about 1,900 instructions (callgrind, BENCHMARKS.md) on a path whose whole answer
//! costs a few thousand more.
//!
//! [`HeadTimer`]'s sleeps register nothing: each is a deadline compared with the clock when
//! hyper polls it. hyper polls it only when a read of the head found no bytes, and every such
//! read goes through the connection's [`StallGuard`](super::StallGuard), whose timer wakes the
//! connection at each of its ticks while a read waits. So a head that trickles in (progress,
//! which the guard alone allows) still ends at its deadline, seen at most one tick late, and
//! hyper closes the connection unanswered as before.
//! Use it only on connections wrapped in a `StallGuard`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// The header-read timer of connections wrapped in a `StallGuard`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadTimer;

/// A head's deadline: ready once the clock has passed it.
#[derive(Debug)]
struct HeadDeadline {
    deadline: Instant,
}

/// tokio's clock, so tests that pause tokio time pause this too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadDeadline { deadline })
    }

    fn now(&self) -> Instant {
        now()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadDeadline>() {
            Some(head) => head.get_mut().deadline = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

impl Future for HeadDeadline {
    type Output = ();

    /// Never registers a waker: the connection's `StallGuard` ticks wake its task.
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if now() >= self.deadline {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for HeadDeadline {}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::connections::{StallGuard, StallLimits};

    const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
    const LIMITS: StallLimits = StallLimits {
        read: Duration::from_secs(30),
        write: Duration::from_secs(10),
    };

    /// A served connection with a head timeout, and the client's end of it.
    fn serve() -> tokio::io::DuplexStream {
        let (ours, theirs) = tokio::io::duplex(4096);
        let service = service_fn(|_: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        });
        let connection = http1::Builder::new()
            .timer(HeadTimer)
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(StallGuard::new(ours, LIMITS)), service);
        tokio::spawn(connection);
        theirs
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_is_cut_off_at_its_deadline() {
        let mut client = serve();
        let started = tokio::time::Instant::now();
        // A byte every 2 s is progress, so the stall guard alone would wait forever.
        let head =
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut closed = false;
        for byte in head {
            if client.write_all(&[*byte]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut buf = [0u8; 256];
            let read = tokio::time::timeout(Duration::ZERO, client.read(&mut buf)).await;
            if let Ok(read) = read {
                assert!(!matches!(read, Ok(n) if n > 0), "answered: {:?}", &buf[..8]);
                closed = true;
                break;
            }
        }
        assert!(closed, "the whole head was accepted");
        let waited = started.elapsed();
        assert!(
            waited >= HEAD_TIMEOUT
                && waited <= HEAD_TIMEOUT + LIMITS.tick() + Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_requests_are_answered_and_a_silent_connection_closes() {
        let mut client = serve();
        for _ in 0..3 {
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = client.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
            // Idle between requests for less than the timeout: still open.
            tokio::time::sleep(HEAD_TIMEOUT / 2).await;
        }
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "closed, no answer");
        assert!(
            started.elapsed() <= HEAD_TIMEOUT + LIMITS.tick(),
            "{:?}",
            started.elapsed()
        );
    }
}
