//! Admission: the workspace's concurrency slots and the CPS pacer behind one short lock.
//!
//! - `pacer`: the pure CPS state machine (per trunk, sliding one-second window).
//! - here: `Admissions` hands out `Ticket`s; a ticket paces its call's INVITE and holds a
//!   concurrency slot until the call task drops it (RAII). Inbound calls take slots too.
//!
//! Architecture Invariant: this module knows nothing of call tasks, SIP or the store; it is
//! below `calls` (which holds tickets) and `dispatch` (which asks for them).

pub mod pacer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::WorkspaceId;
use crate::domain::limits::{Limits, TrunkRef};
use pacer::{Admission, Pacer};

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
        Ok(Ticket { admissions: self.clone(), workspace_id: workspace_id.clone(), admission: Some(admission), pending_send: None, cps })
    }

    /// A slot for an inbound call, if the workspace is under its limit.
    pub fn try_inbound_slot(self: &Arc<Self>, workspace_id: &WorkspaceId, limits: &Limits) -> Option<Ticket> {
        let mut state = self.lock();
        let live = state.live.entry(workspace_id.clone()).or_default();
        if *live >= limits.concurrency {
            return None;
        }
        *live += 1;
        Some(Ticket { admissions: self.clone(), workspace_id: workspace_id.clone(), admission: None, pending_send: None, cps: 0 })
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
    /// The trunk whose send this ticket recorded and has not confirmed with `invite_left`.
    pending_send: Option<String>,
    cps: u32,
}

impl Ticket {
    /// Returns when the INVITE may leave, and records its send provisionally: the caller
    /// makes its durable claim, then says `invite_left` as the INVITE goes. Until then the
    /// trunk's next send waits, so a claim slowed by the disk never lets two INVITEs bunch.
    pub async fn invite_may_leave(&mut self) {
        let Some(admission) = self.admission.take() else { return };
        loop {
            let verdict = self.admissions.lock().pacer.send(&admission, self.cps, Instant::now());
            match verdict {
                Ok(()) => {
                    self.pending_send = Some(admission.trunk().to_owned());
                    return;
                }
                Err(until) => tokio::time::sleep_until(until.into()).await,
            }
        }
    }

    /// The INVITE is handed to the wire now: its send time is final.
    pub fn invite_left(&mut self) {
        if let Some(trunk) = self.pending_send.take() {
            self.admissions.lock().pacer.left(&trunk, Instant::now());
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admissions.lock();
        if let Some(admission) = self.admission.take() {
            state.pacer.release(admission);
        }
        if let Some(trunk) = self.pending_send.take() {
            // Claimed by another task, stopped, or failed: the recorded send stands.
            state.pacer.left(&trunk, Instant::now());
        }
        if let Some(live) = state.live.get_mut(&self.workspace_id) {
            *live = live.saturating_sub(1);
        }
    }
}
