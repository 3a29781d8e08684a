//! Dispatch: the one place that decides whether and when an outbound call is dialed.
//!
//! - `limits`: a workspace's concurrency and per-provider CPS settings.
//! - `pacer`: the pure CPS state machine (per trunk, sliding one-second window).
//! - `batch`: the worker of a batch campaign (window, reserved concurrency, resume).
//! - here: `Admissions` (pacer + concurrency counts behind one lock) hands out `Ticket`s; a
//!   ticket paces its call's INVITE and holds a concurrency slot until the call task drops it.
//!   `Dispatcher` claims admitted calls in the store and starts their tasks.
//!
//! Architecture Invariant: no INVITE for a new outbound call leaves without its ticket
//! saying so, and a call counts against the workspace's concurrency from admission to end.

pub mod batch;
pub mod limits;
pub mod pacer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::calls::{CallRuntime, outbound};
use crate::domain::{CallId, WorkspaceId};
use limits::{CpsProvider, Limits};
use pacer::{Admission, Pacer};

/// Which trunk a call leaves through, and whose CPS limit applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkRef {
    pub provider: CpsProvider,
    /// Identifies the trunk within the workspace (the termination URI for custom trunks).
    pub key: String,
}

/// Why a call was not admitted, and when to try again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Cps { limit: u32, retry_after: Duration },
    Concurrency { limit: u32, retry_after: Duration },
}

/// How long a caller refused for concurrency is told to wait: calls end at unpredictable
/// times, so this is a polling interval rather than a promise.
pub const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// The pacer and the live-call counts, shared by the API, the dialer and inbound calls.
#[derive(Debug, Default)]
pub struct Admissions {
    state: Mutex<AdmissionState>,
}

#[derive(Debug, Default)]
struct AdmissionState {
    pacer: Pacer,
    /// Calls admitted or answered and not yet ended, per workspace.
    live: HashMap<WorkspaceId, u32>,
}

impl Admissions {
    fn lock(&self) -> std::sync::MutexGuard<'_, AdmissionState> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Admits an outbound call now, or says which limit refused it. `reserved` slots of the
    /// workspace's concurrency are kept for other traffic (a batch's `reserved_concurrency`).
    pub fn admit(
        self: &Arc<Self>,
        workspace_id: &WorkspaceId,
        trunk: &TrunkRef,
        limits: &Limits,
        reserved: u32,
    ) -> Result<Ticket, Refusal> {
        let now = Instant::now();
        let mut state = self.lock();
        let live = state.live.get(workspace_id).copied().unwrap_or(0);
        let allowed = limits.concurrency.saturating_sub(reserved);
        if live >= allowed {
            return Err(Refusal::Concurrency { limit: allowed, retry_after: CONCURRENCY_RETRY });
        }
        let cps = limits.cps(trunk.provider);
        let pacer_key = format!("{workspace_id}/{}/{}", trunk.provider.key(), trunk.key);
        let admission = state.pacer.admit(&pacer_key, cps, now).map_err(|retry_after| Refusal::Cps { limit: cps, retry_after })?;
        *state.live.entry(workspace_id.clone()).or_default() += 1;
        Ok(Ticket { admissions: self.clone(), workspace_id: workspace_id.clone(), admission: Some(admission), cps })
    }

    /// A slot for an inbound call, if the workspace is under its limit.
    pub fn try_inbound_slot(self: &Arc<Self>, workspace_id: &WorkspaceId, limits: &Limits) -> Option<Ticket> {
        let mut state = self.lock();
        let live = state.live.entry(workspace_id.clone()).or_default();
        if *live >= limits.concurrency {
            return None;
        }
        *live += 1;
        Some(Ticket { admissions: self.clone(), workspace_id: workspace_id.clone(), admission: None, cps: 0 })
    }

    /// Calls live now in the workspace (admitted, dialing, ringing, talking; both directions).
    pub fn live(&self, workspace_id: &WorkspaceId) -> u32 {
        self.lock().live.get(workspace_id).copied().unwrap_or(0)
    }
}

/// A call's admission: it paces the call's INVITE and holds one concurrency slot until dropped.
#[derive(Debug)]
pub struct Ticket {
    admissions: Arc<Admissions>,
    workspace_id: WorkspaceId,
    /// Until the INVITE has left; `None` afterwards (and for inbound slots).
    admission: Option<Admission>,
    cps: u32,
}

impl Ticket {
    /// Returns when the INVITE may leave, and records that it leaves now.
    pub async fn invite_may_leave(&mut self) {
        let Some(admission) = self.admission.take() else { return };
        loop {
            let verdict = self.admissions.lock().pacer.send(&admission, self.cps, Instant::now());
            match verdict {
                Ok(()) => return,
                Err(until) => tokio::time::sleep_until(until.into()).await,
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admissions.lock();
        if let Some(admission) = self.admission.take() {
            state.pacer.release(admission);
        }
        if let Some(live) = state.live.get_mut(&self.workspace_id) {
            *live = live.saturating_sub(1);
        }
    }
}

/// Admits a call as soon as the limits allow, waiting as each refusal says; `None` if the
/// process is shutting down first. For calls that must not be refused (recovered calls, batch
/// tasks).
pub async fn wait_for_admission(runtime: &CallRuntime, workspace_id: &WorkspaceId, trunk: &TrunkRef, reserved: u32) -> Option<Ticket> {
    loop {
        let limits = runtime.limits(workspace_id).await;
        match runtime.admissions.admit(workspace_id, trunk, &limits, reserved) {
            Ok(ticket) => return Some(ticket),
            Err(Refusal::Cps { retry_after, .. } | Refusal::Concurrency { retry_after, .. }) => {
                if !sleep_unless_stopped(runtime, retry_after).await {
                    return None;
                }
            }
        }
    }
}

/// Sleeps; `false` if shutdown came first.
pub async fn sleep_unless_stopped(runtime: &CallRuntime, duration: Duration) -> bool {
    tokio::select! {
        () = runtime.shutdown.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}

/// Hands admitted calls to the dialer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    queue: mpsc::UnboundedSender<(WorkspaceId, CallId, Ticket)>,
}

impl Dispatcher {
    /// Starts the dispatch task on `runtime`.
    pub fn start(runtime: Arc<CallRuntime>) -> Self {
        let (queue, mut calls) = mpsc::unbounded_channel::<(WorkspaceId, CallId, Ticket)>();
        tokio::spawn(async move {
            while let Some((workspace_id, call_id, ticket)) = calls.recv().await {
                // The call task claims the call in the store the moment its INVITE may leave,
                // so a call is dialed at most once whoever asks, and a crash before that
                // moment leaves it to be dialed after the restart.
                let call = match runtime.store.get_call(&workspace_id, &call_id).await {
                    Ok(call) => call,
                    Err(err) => {
                        tracing::error!(%call_id, error = %err, "claimed call vanished");
                        continue;
                    }
                };
                runtime.tracker.spawn(outbound::run(runtime.clone(), workspace_id, call, ticket));
            }
        });
        Self { queue }
    }

    /// Admits a stored call as soon as the limits allow (waiting, not refusing), then queues
    /// it: for calls recovered at start and batch tasks.
    pub fn dispatch_when_admitted(&self, runtime: Arc<CallRuntime>, workspace_id: WorkspaceId, call: crate::store::CallRow) {
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let Ok(number) = runtime.store.get_number(&workspace_id, &call.from_number).await else {
                runtime
                    .end(
                        &workspace_id,
                        &call.call_id,
                        crate::domain::CallStatus::NotConnected,
                        crate::domain::DisconnectionReason::TelephonyProviderUnavailable,
                        crate::store::Document::new(),
                    )
                    .await;
                return;
            };
            let trunk = crate::calls::create::trunk_of(&number);
            if let Some(ticket) = wait_for_admission(&runtime, &workspace_id, &trunk, 0).await {
                dispatcher.dispatch(workspace_id, call.call_id, ticket);
            }
        });
    }

    /// Queues an admitted call for dialing.
    pub fn dispatch(&self, workspace_id: WorkspaceId, call_id: CallId, ticket: Ticket) {
        // The task only stops with the process.
        let _ = self.queue.send((workspace_id, call_id, ticket));
    }
}
