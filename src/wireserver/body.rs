//! Reading request bodies: bounded in size and in time (a slow upload must not hold a
//! connection), or drained and thrown away for uploads azimds does not keep.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use crate::wireserver::error::WireError;

/// What a body may be, per kind of request.
#[derive(Clone, Copy, Debug)]
pub(super) struct BodyLimit {
    pub max: usize,
    pub within: Duration,
}

/// Health reports are a few hundred bytes (waagent's description: at most 4096, §5.1).
pub(super) const REPORT: BodyLimit = BodyLimit {
    max: 64 * 1024,
    within: Duration::from_secs(10),
};
/// Telemetry is at most 63 KiB per request (§6.3); HealthService a few hundred bytes (§6.4).
pub(super) const TELEMETRY: BodyLimit = BodyLimit {
    max: 256 * 1024,
    within: Duration::from_secs(10),
};
/// A status upload: base64 status JSON, larger with many extensions.
pub(super) const STATUS: BodyLimit = BodyLimit {
    max: 4 * 1024 * 1024,
    within: Duration::from_secs(30),
};
/// waagent's log archive (`PUT /vmAgentLog`), drained, never kept.
pub(super) const AGENT_LOG: BodyLimit = BodyLimit {
    max: 256 * 1024 * 1024,
    within: Duration::from_secs(300),
};

/// The whole body, if it is within `limit`.
pub(super) async fn read<B>(body: B, limit: BodyLimit) -> Result<Bytes, WireError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collected = tokio::time::timeout(limit.within, Limited::new(body, limit.max).collect())
        .await
        .map_err(|_| WireError::BodyTimeout)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(WireError::TooLarge),
        Err(_) => Err(WireError::BadReport),
    }
}

/// Reads and discards the body, if it is within `limit`.
pub(super) async fn drain<B>(body: B, limit: BodyLimit) -> Result<(), WireError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let drained = async {
        let mut body = std::pin::pin!(body);
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| WireError::BadReport)?;
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > limit.max {
                    return Err(WireError::TooLarge);
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(limit.within, drained)
        .await
        .map_err(|_| WireError::BodyTimeout)?
}
