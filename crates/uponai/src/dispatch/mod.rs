//! Dispatch: the one place that decides when a registered outbound call is dialed.
//!
//! Today every call is dialed as soon as it is handed over; the per-trunk CPS pacer and the
//! concurrency limit (M3) go here, so nothing else ever starts an INVITE.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::calls::{outbound, CallRuntime};
use crate::domain::{now_ms, CallId, WorkspaceId};

/// Hands calls to the dialer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    queue: mpsc::UnboundedSender<(WorkspaceId, CallId)>,
}

impl Dispatcher {
    /// Starts the dispatch task on `runtime`.
    pub fn start(runtime: Arc<CallRuntime>) -> Self {
        let (queue, mut calls) = mpsc::unbounded_channel::<(WorkspaceId, CallId)>();
        tokio::spawn(async move {
            while let Some((workspace_id, call_id)) = calls.recv().await {
                // Claiming the call in the store first means a call is dialed at most once,
                // whoever asks and however often.
                match runtime.store.mark_call_dispatched(&call_id, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(err) => {
                        tracing::error!(%call_id, error = %err, "could not claim a call for dialing");
                        continue;
                    }
                }
                let call = match runtime.store.get_call(&workspace_id, &call_id).await {
                    Ok(call) => call,
                    Err(err) => {
                        tracing::error!(%call_id, error = %err, "claimed call vanished");
                        continue;
                    }
                };
                runtime.tracker.spawn(outbound::run(runtime.clone(), workspace_id, call));
            }
        });
        Self { queue }
    }

    /// Queues a registered outbound call for dialing.
    pub fn dispatch(&self, workspace_id: WorkspaceId, call_id: CallId) {
        // The task only stops with the process.
        let _ = self.queue.send((workspace_id, call_id));
    }
}
