//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`; hidden from the docs,
//! not a stable API). [`GuestPlane`] answers guest requests end to end, through
//! `guest::respond`, on the demo VM's state held in memory, without TCP. The functions are the
//! request and body rules private to their modules; what the targets fuzz beyond these is
//! public already (`definition::parse`, `definition::vm_from_json`, `registry::merge_patch`,
//! `faults::FaultBook`).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::clock::ManualClock;
use crate::definition;
use crate::events::Event;
use crate::guest;
use crate::maintenance::{self, MaintenanceConfig, ScheduleRequest};
use crate::problem::Problem;
use crate::server::{self, Options};
use crate::snapshot::{CallerMode, Snapshot};
use crate::state::Shared;
use crate::testing::{Builder, TempDir};
use crate::throttle::RateLimit;

pub use crate::guest::fuzzing::{TokenChoice, attested_query, start_requests, token_query};

/// The event [`GuestPlane::demo`] schedules for the demo VM, so that scheduled-events GETs
/// list one and POSTs can approve it.
pub const DEMO_EVENT_ID: &str = "F6E5D4C3-B2A1-4098-8765-43210FEDCBA9";

/// Where every guest request comes from (the demo VM answers any caller, `--callers single`).
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

/// The time the targets run at: a manual clock that never moves, so a run is repeatable.
pub fn fixed_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

/// A guest plane with the demo VM, answering requests in-process.
#[derive(Debug)]
pub struct GuestPlane {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
}

/// A guest answer, its body collected.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl GuestPlane {
    /// The state a server started with no definitions file serves (the demo VM, caller mode
    /// `single`), plus one scheduled Freeze ([`DEMO_EVENT_ID`]); no fault rule, and neither the
    /// general rate limit nor the identity limits, whose 429s would hide the endpoints. The
    /// attested documents' own limit stays: the fixed clock lets 5 be signed, then 429.
    ///
    /// # Panics
    /// If the state cannot be opened in a temporary directory.
    pub fn demo() -> GuestPlane {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        let temp = TempDir::new().expect("a temporary data directory");
        let settings = Builder::default().settings(temp.path().join("data"));
        let options = Options {
            clock: Arc::new(ManualClock::new(fixed_now())),
            definitions: None,
        };
        let shared = {
            let _entered = runtime.enter();
            server::open_state(&settings, options).expect("the demo VM's state opens")
        };
        let vm_id = demo_vm().id.clone();
        shared
            .events()
            .schedule(ScheduleRequest {
                event_type: "Freeze".into(),
                vms: vec![vm_id],
                event_id: Some(DEMO_EVENT_ID.into()),
                ..ScheduleRequest::default()
            })
            .expect("a Freeze for the demo VM is scheduled");
        // The store is open and the keys are loaded, so the files can go now: a fuzzer keeps
        // its plane in a static that is never dropped, and would leave the directory behind.
        // An approval still commits to the open (unlinked) store file.
        drop(temp);
        GuestPlane { runtime, shared }
    }

    /// Answers `request` as the guest listener would, from the demo VM's address.
    pub fn respond(&self, request: Request<Full<Bytes>>) -> Answer {
        self.runtime.block_on(async {
            let (parts, body) = guest::respond(&self.shared, PEER, request)
                .await
                .into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
    }
}

/// The control API's `POST /v1/events` body: `None` when it is not a schedule request (the
/// handler's 400), else the event `Maintenance::schedule` would store for the demo VM at
/// [`fixed_now`], or every problem found.
pub fn schedule_request(body: &[u8]) -> Option<Result<Event, Vec<Problem>>> {
    let request: ScheduleRequest = serde_json::from_slice(body).ok()?;
    static DEMO: LazyLock<Snapshot> = LazyLock::new(|| {
        Snapshot::empty(CallerMode::Single, RateLimit(0))
            .with_vm(demo_vm().clone())
            .expect("the demo VM fits an empty snapshot")
    });
    Some(maintenance::event_from_request(
        request,
        |id| DEMO.vm(id).map(|vm| vm.definition().label().to_string()),
        &MaintenanceConfig::default(),
        fixed_now(),
    ))
}

/// The demo VM, checked.
pub fn demo_vm() -> &'static definition::VmDefinition {
    static DEMO: LazyLock<definition::Definitions> = LazyLock::new(definition::demo);
    &DEMO.vms[0].vm
}
