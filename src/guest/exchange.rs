//! One guest request from its arrival to its answer, and what is recorded of it: the metrics,
//! the VM's journal entry, the access-log line and, when a fault rule answered, the log line
//! saying so. Recording formats nothing but the access log (when on): labels are indices, the
//! journal copies bytes into reused buffers.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};

use crate::faults::{Action, Injection};
use crate::guest::error::{GuestError, IdentityError};
use crate::guest::faults::{Aborted, truncate};
use crate::guest::request::{HeaderFacts, split_ascii};
use crate::guest::response::Body;
use crate::snapshot::ServedVm;
use crate::state::Shared;
use crate::telemetry::GuestEndpoint;
use crate::telemetry::journal::{MAX_TARGET, MAX_USER_AGENT, copy_bounded};
use crate::telemetry::metrics::{Observation, Refusal, api_version_label};

/// A request being answered.
pub(super) struct Exchange {
    started: Instant,
    /// The caller's VM, once resolved.
    pub(super) vm: Option<Arc<ServedVm>>,
    /// The fault rule that took the request, if one did.
    injection: Option<Injection>,
    /// The request's headers as the route and the journal read them: read once.
    pub(super) headers: HeaderFacts,
    /// The endpoint's label when the router already knows it (else it is read from the path
    /// when recording).
    pub(super) endpoint: Option<GuestEndpoint>,
}

impl Exchange {
    pub(super) fn begin(head: &Request<()>) -> Exchange {
        Exchange {
            started: Instant::now(),
            vm: None,
            injection: None,
            headers: HeaderFacts::read(head.headers()),
            endpoint: None,
        }
    }

    /// Asks the VM's fault rules whether one takes this request; returns what it does.
    pub(super) fn inject(
        &mut self,
        shared: &Shared,
        vm: &ServedVm,
        head: &Request<()>,
    ) -> Option<Action> {
        let uri = head.uri();
        self.injection = vm.runtime().faults.take(
            shared.faults(),
            &vm.definition().id,
            || shared.clock().now(),
            head.method(),
            uri.path(),
            uri.query(),
        );
        self.injection.as_ref().map(|i| i.action)
    }

    /// The answer, recorded; a reset fault answers nothing.
    pub(super) fn conclude(
        self,
        shared: &Shared,
        head: &Request<()>,
        answered: Result<Response<Body>, GuestError>,
    ) -> Result<Response<Body>, Aborted> {
        match self.injection.as_ref().map(|i| i.action) {
            Some(Action::Reset) => {
                self.record_unanswered(shared, head);
                Err(Aborted)
            }
            Some(Action::Truncate) => Ok(truncate(self.finish(shared, head, answered))),
            _ => Ok(self.finish(shared, head, answered)),
        }
    }

    /// The answer (an error made into Azure's bytes), recorded.
    pub(super) fn finish(
        self,
        shared: &Shared,
        head: &Request<()>,
        answered: Result<Response<Body>, GuestError>,
    ) -> Response<Body> {
        let (response, refusal) = match answered {
            Ok(response) => (response, None),
            Err(error) => (error.into_response(), self.refusal(error)),
        };
        self.record(shared, head, response.status().as_u16(), refusal);
        response
    }

    /// Records a request a stall or reset fault answers with nothing (status 0).
    pub(super) fn record_unanswered(&self, shared: &Shared, head: &Request<()>) {
        self.record(shared, head, 0, None);
    }

    /// What the misuse counters count; an injected answer is not a refusal.
    fn refusal(&self, error: GuestError) -> Option<Refusal> {
        if self.injection.is_some() {
            return None;
        }
        match error {
            GuestError::MissingMetadataHeader
            | GuestError::Identity(IdentityError::MissingMetadataHeader) => {
                Some(Refusal::MissingMetadataHeader)
            }
            GuestError::ForwardedFor | GuestError::Identity(IdentityError::ForwardedFor) => {
                Some(Refusal::ForwardedFor)
            }
            GuestError::Throttled | GuestError::Identity(IdentityError::Throttled) => {
                Some(Refusal::Throttled)
            }
            _ => None,
        }
    }

    fn record(&self, shared: &Shared, head: &Request<()>, status: u16, refusal: Option<Refusal>) {
        let telemetry = shared.telemetry();
        let uri = head.uri();
        let endpoint = self
            .endpoint
            .unwrap_or_else(|| GuestEndpoint::from_path(uri.path()));
        let api_version = uri
            .query()
            .and_then(|q| split_ascii(q, b'&').find_map(|p| p.strip_prefix("api-version=")));
        let elapsed = self.started.elapsed();
        let runtime = self.vm.as_deref().map(ServedVm::runtime);
        let observation = Observation {
            endpoint,
            status,
            api_version,
            elapsed,
            injected: self.injection.as_ref().map(|i| i.action.label_index()),
            refusal,
        };
        telemetry
            .guest
            .record(&observation, runtime.map(|r| &r.counters));
        let capacity = telemetry.settings.journal_size;
        if let Some(runtime) = runtime
            && capacity > 0
        {
            runtime.journal.record(capacity, |entry| {
                entry.at = shared.clock().now();
                entry.method = head.method().clone();
                entry.endpoint = endpoint;
                let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
                copy_bounded(&mut entry.target, target.as_bytes(), MAX_TARGET);
                entry.status = status;
                entry.duration = elapsed;
                entry.fault = self
                    .injection
                    .as_ref()
                    .map(|i| (Arc::clone(&i.rule.id), i.action.name()));
                match &self.headers.user_agent {
                    Some(agent) => {
                        let kept = entry.user_agent.get_or_insert_with(Vec::new);
                        copy_bounded(kept, agent.as_bytes(), MAX_USER_AGENT);
                    }
                    None => entry.user_agent = None,
                }
                entry.metadata_header = self.headers.metadata;
            });
        }
        if self.injection.is_some() || telemetry.settings.access_log {
            self.log(head, &observation, telemetry.settings.access_log);
        }
    }

    /// The injected-fault line, and the access-log line when it is on. Only labels and
    /// numbers: never the query (it may carry a nonce), a header or a body.
    #[cold]
    fn log(&self, head: &Request<()>, observation: &Observation<'_>, access: bool) {
        let vm = self
            .vm
            .as_deref()
            .map_or("-", |vm| vm.definition().id.as_str());
        let endpoint = observation.endpoint.as_str();
        let api_version = api_version_label(observation.api_version);
        let status = observation.status;
        if let Some(injection) = &self.injection {
            tracing::info!(
                vm,
                rule = %injection.rule.id,
                action = injection.action.name(),
                endpoint,
                status,
                "injected a fault"
            );
        }
        if !access {
            return;
        }
        tracing::info!(
            target: "azimds::access",
            vm,
            method = %head.method(),
            endpoint,
            api_version,
            status,
            duration_us = observation.elapsed.as_micros() as u64,
            fault = self.injection.as_ref().map(|i| i.rule.id.to_string()),
            "guest request"
        );
    }
}
