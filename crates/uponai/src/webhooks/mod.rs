//! Webhooks — **API Boundary** (the payloads are a wire format, like `api`'s).
//!
//! A call's state change and its events are written in one transaction (`store`'s outbox):
//! `event` decides which events, where to and with which body; `deliver` sends them, signed
//! (`sign`), in order per call, retrying with `retry`'s backoff, at least once.

mod deliver;
mod event;
mod retry;
mod sign;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::domain::WorkspaceId;
use crate::egress::Egress;
use crate::store::Store;
use crate::view::RecordingLinks;

pub use deliver::{Deliverer, EVENT_ID_HEADER};
pub use event::{ANALYSIS_PENDING, DEFAULT_TIMEOUT_MS, EventName, Planner, TransferStage, Transition, WorkspaceWebhook};
pub use retry::RetryPolicy;
pub use sign::{SIGNATURE_HEADER, signature};

/// What call tasks and the deliverer share.
pub struct Webhooks {
    store: Arc<Store>,
    links: Arc<RecordingLinks>,
    policy: RetryPolicy,
    /// Checks literal-IP targets before each attempt; the client's resolver checks names.
    egress: Egress,
    client: reqwest::Client,
    /// Woken when events were queued or a delivery finished, so the next event of a call
    /// does not wait for the next poll.
    wake: tokio::sync::Notify,
}

impl Webhooks {
    pub fn new(store: Arc<Store>, links: Arc<RecordingLinks>, policy: RetryPolicy, egress: Egress) -> anyhow::Result<Arc<Self>> {
        // A redirect is a misconfigured target: shown in the delivery log, not followed.
        let client = egress.http_client(concat!("uponai-webhooks/", env!("CARGO_PKG_VERSION")))?;
        Ok(Arc::new(Self { store, links, policy, egress, client, wake: tokio::sync::Notify::new() }))
    }

    /// A planner for one state change of one of the workspace's calls. Settings that cannot
    /// be read mean no workspace-level target (agent-level targets still work).
    pub async fn planner(&self, workspace_id: &WorkspaceId) -> Planner {
        let workspace = match self.store.workspace_settings(workspace_id).await {
            Ok(settings) => WorkspaceWebhook::from_settings(&settings),
            Err(err) => {
                tracing::warn!(%workspace_id, error = %err, "could not read the workspace webhook settings");
                WorkspaceWebhook::default()
            }
        };
        Planner { workspace, links: self.links.clone() }
    }

    /// Tells the deliverer that events may be due now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers events until `shutdown`; attempts in flight are given a few seconds to finish
    /// (one cut short is sent again after the restart).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let deliverer = Deliverer::new(self.clone());
        loop {
            if let Err(err) = deliverer.try_run_once(crate::domain::now_ms()).await {
                tracing::warn!(error = %err, "webhook outbox could not be read");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(deliver::POLL_INTERVAL) => {}
            }
        }
        deliverer.drain(std::time::Duration::from_secs(5)).await;
    }
}
