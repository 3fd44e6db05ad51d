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

    use super::*;
    use crate::connections::StallGuard;

    use crate::connections::head_tests::{self, HEAD_TIMEOUT, LIMITS};

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
        head_tests::a_trickled_head_is_cut_off_at_its_deadline(serve()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_requests_are_answered_and_a_silent_connection_closes() {
        head_tests::keep_alive_requests_are_answered_and_a_silent_connection_closes(serve()).await;
    }
}
