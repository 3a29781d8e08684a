//! Dispatch: the one place that decides whether and when an outbound call is dialed.
//!
//! - `batch`: the worker of a batch campaign (window, reserved concurrency, resume).
//! - here: `wait_for_admission` (admission that waits instead of refusing) and `Dispatcher`,
//!   which claims admitted calls in the store and starts their tasks.
//!
//! Architecture Invariant: no INVITE for a new outbound call leaves without its ticket
//! saying so, and a call counts against the workspace's concurrency from admission to end.

pub mod batch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::admission::{Refusal, Ticket};
use crate::calls::{CallRuntime, PreparedCall, outbound};
use crate::domain::limits::TrunkRef;
use crate::domain::{CallId, Direction, DisconnectionReason, Termination, WorkspaceId};
use crate::store::{CallRow, StoreError};

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
#[derive(Clone)]
pub struct Dispatcher {
    queue: mpsc::UnboundedSender<(WorkspaceId, CallId, Ticket)>,
    runtime: Arc<CallRuntime>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

/// Why `place_now` placed nothing (and recorded nothing).
#[derive(Debug)]
pub enum PlaceError {
    /// A limit refused the call: the client is told when to retry (429).
    Refused {
        refusal: Refusal,
        trunk: TrunkRef,
    },
    Store(StoreError),
}

impl From<StoreError> for PlaceError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl Dispatcher {
    /// Starts the dispatch task on `runtime`.
    pub fn start(runtime: Arc<CallRuntime>) -> Self {
        let (queue, mut calls) = mpsc::unbounded_channel::<(WorkspaceId, CallId, Ticket)>();
        let dialer = Self { queue, runtime: runtime.clone() };
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
        dialer
    }

    /// The decision for a call asked for now (the API's create routes): a repeated
    /// `idempotency_key` returns the first call and counts against nothing; otherwise the call
    /// is admitted through the workspace's concurrency and its trunk's CPS or refused, and only
    /// an admitted call is stored and queued for dialing. Calls we do not dial (dial-in
    /// registrations) are only stored.
    pub async fn place_now(&self, workspace_id: &WorkspaceId, prepared: PreparedCall) -> Result<CallRow, PlaceError> {
        let store = &self.runtime.store;
        if let Some(key) = &prepared.row.idempotency_key
            && let Some(first) = store.find_idempotent_call(workspace_id, key).await?
        {
            return Ok(first);
        }
        let ticket = match &prepared.trunk {
            Some(trunk) if prepared.row.direction == Direction::Outbound => {
                let limits = self.runtime.limits(workspace_id).await;
                let admitted = self.runtime.admissions.admit(workspace_id, trunk, &limits, 0);
                Some(admitted.map_err(|refusal| PlaceError::Refused { refusal, trunk: trunk.clone() })?)
            }
            _ => None,
        };
        // The store checks the key again inside its transaction: two racing repeats store one
        // call, and the loser's ticket is dropped (released) here.
        let (row, is_new) = store.insert_call(workspace_id, &prepared.row).await?;
        if let (true, Some(ticket)) = (is_new, ticket) {
            self.dispatch(workspace_id.clone(), row.call_id.clone(), ticket);
        }
        Ok(row)
    }

    /// Admits a stored call as soon as the limits allow (waiting, not refusing), then queues
    /// it: for calls recovered at start and batch tasks.
    pub fn dispatch_when_admitted(&self, runtime: Arc<CallRuntime>, workspace_id: WorkspaceId, call: crate::store::CallRow) {
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let Ok(number) = runtime.store.get_number(&workspace_id, &call.from_number).await else {
                let termination = Termination::not_connected(DisconnectionReason::TelephonyProviderUnavailable);
                runtime.end(&workspace_id, &call.call_id, termination, crate::store::Document::new()).await;
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
