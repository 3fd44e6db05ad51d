//! The guest plane's request-head limit, kept by the connection's stall guard (`StallGuard`)
//! instead of hyper's `header_read_timeout`. With a header timeout set, hyper arms a timer for
//! every head (a boxed sleep and a clock read) and makes an extra read after each head to keep the timer
//! polled: about 700 instructions per request (callgrind, BENCHMARKS.md) on a path whose
//! whole answer costs a few thousand more.
//!
//! Here the service says when hyper handed it a head ([`HeadWatch::arrived`]: an atomic
//! store); the guard, which sees every read and write, starts the wait for the next head at
//! the first read after the answer began to be written, and fails a read still waiting past
//! the deadline with `TimedOut` at one of its ticks. hyper then closes the connection
//! unanswered, as it does at its own head timeout: a head that trickles in is cut off at its
//! deadline (seen at most one tick late), and an idle keep-alive connection is closed after
//! the same time. The control plane keeps hyper's timeout (with [`HeadTimer`](super::HeadTimer)):
//! its router is not ours to instrument, and its cost there does not matter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Shared by a connection's service and its guard: whether a head arrived since the guard
/// last looked.
#[derive(Debug, Default)]
pub struct HeadWatch {
    arrived: AtomicBool,
}

impl HeadWatch {
    /// Called by the service for each request hyper hands it.
    pub fn arrived(&self) {
        self.arrived.store(true, Ordering::Relaxed);
    }
}

/// Where a connection is in its request cycle, as the guard sees it.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a head, which must be complete by then.
    Head { deadline: Instant },
    /// A head arrived: the request (and its body, if any) is being answered.
    Answering,
    /// The answer is being written; the next read waits for the next head.
    Answered,
}

/// The head limit of one connection.
#[derive(Debug)]
pub(super) struct HeadLimit {
    timeout: Duration,
    watch: Arc<HeadWatch>,
    phase: Phase,
}

impl HeadLimit {
    /// The first head's wait starts now.
    pub(super) fn new(timeout: Duration, watch: Arc<HeadWatch>) -> HeadLimit {
        HeadLimit {
            timeout,
            watch,
            phase: Phase::Head {
                deadline: Instant::now() + timeout,
            },
        }
    }

    /// Before every read and write: a head that arrived ends the wait for it.
    fn settle_arrival(&mut self) {
        // A load first: the swap's locked instruction only when there is news.
        if self.watch.arrived.load(Ordering::Relaxed) {
            self.watch.arrived.store(false, Ordering::Relaxed);
            self.phase = Phase::Answering;
        }
    }

    /// Before a read: the first read after the answer started waits for the next head.
    pub(super) fn before_read(&mut self) {
        self.settle_arrival();
        if let Phase::Answered = self.phase {
            self.phase = Phase::Head {
                deadline: Instant::now() + self.timeout,
            };
        }
    }

    /// After bytes were written: the answer is on its way.
    pub(super) fn after_write(&mut self) {
        self.settle_arrival();
        if let Phase::Answering = self.phase {
            self.phase = Phase::Answered;
        }
    }

    /// At a tick: whether the head being waited for is past its deadline.
    pub(super) fn expired(&mut self) -> bool {
        self.settle_arrival();
        matches!(self.phase, Phase::Head { deadline } if Instant::now() >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::connections::StallGuard;

    use crate::connections::head_tests::{self, HEAD_TIMEOUT, LIMITS};

    /// A served connection whose guard keeps a head limit, and the client's end of it.
    fn serve() -> tokio::io::DuplexStream {
        let (ours, theirs) = tokio::io::duplex(4096);
        let watch = Arc::new(HeadWatch::default());
        let guard = StallGuard::new(ours, LIMITS).with_head_limit(HEAD_TIMEOUT, Arc::clone(&watch));
        let service = service_fn(move |_: Request<hyper::body::Incoming>| {
            watch.arrived();
            async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
        });
        let connection = http1::Builder::new().serve_connection(TokioIo::new(guard), service);
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

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_does_not_count_against_the_next_head() {
        // The wait for a head starts once its answer is written, not when the head came.
        // Shorter than the stall guard's read limit, which a slow answer must not trip.
        const SHORT: Duration = Duration::from_secs(10);
        let (ours, mut client) = tokio::io::duplex(4096);
        let watch = Arc::new(HeadWatch::default());
        let guard = StallGuard::new(ours, LIMITS).with_head_limit(SHORT, Arc::clone(&watch));
        let service = service_fn(move |_: Request<hyper::body::Incoming>| {
            watch.arrived();
            async {
                tokio::time::sleep(SHORT + Duration::from_secs(5)).await;
                Ok::<_, Infallible>(Response::new(String::from("ok")))
            }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(guard), service));
        for _ in 0..2 {
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = client.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"), "{n} bytes");
            tokio::time::sleep(SHORT / 2).await;
        }
    }
}
