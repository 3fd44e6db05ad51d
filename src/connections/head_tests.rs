//! The head-limit scenarios both mechanisms must pass: hyper's `header_read_timeout` with
//! [`HeadTimer`](super::HeadTimer) (the control plane) and the stall guard's head limit (the
//! guest plane). Each test module makes its own served connection and runs these on it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::connections::StallLimits;

pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const LIMITS: StallLimits = StallLimits {
    read: Duration::from_secs(30),
    write: Duration::from_secs(10),
};

/// A head sent a byte every 2 s (progress, so the stall guard alone would wait forever) is
/// cut off, unanswered, at its deadline, seen at most a tick late.
pub(super) async fn a_trickled_head_is_cut_off_at_its_deadline(mut client: DuplexStream) {
    let started = tokio::time::Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
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
        waited >= HEAD_TIMEOUT && waited <= HEAD_TIMEOUT + LIMITS.tick() + Duration::from_secs(2),
        "{waited:?}"
    );
}

/// Keep-alive requests idle between them for less than the timeout are answered; a
/// connection then silent is closed without an answer after the timeout.
pub(super) async fn keep_alive_requests_are_answered_and_a_silent_connection_closes(
    mut client: DuplexStream,
) {
    for _ in 0..3 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = client.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
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
