//! What every call task shares: the store, the SIP endpoint, RTP ports, and the table that
//! routes in-dialog SIP requests to the task that owns the call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sip::{Incoming, Method, Response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::simulation::SimulationRecord;
use crate::domain::{CallId, CallStatus, DisconnectionReason, Termination, WorkspaceId, now_ms};
use crate::store::{CallEnd, CallRow, Document, Store};
use crate::webhooks::{ANALYSIS_PENDING, Transition, Webhooks};

/// Why a call with a conversation has no summary.
const NO_MODEL_SERVER: &str = "no model server is configured (uponai serve --llm-base-url, or the workspace's llm_base_url)";

/// What call tasks need to know of the process's settings (a `Settings` subset, resolved).
#[derive(Clone, Debug)]
pub struct CallRuntimeConfig {
    /// Put in Contact headers and SDP.
    pub advertised_ip: IpAddr,
    /// RTP sockets bind here (the SIP bind address).
    pub media_bind_ip: IpAddr,
    pub recordings_dir: PathBuf,
    pub no_audio_timeout: Duration,
    /// How long an inbound call at the concurrency limit rings waiting for a slot.
    pub inbound_queue: Duration,
    /// Which trunk addresses may be dialed (and, for the API, which URLs may be saved).
    pub egress: crate::egress::Egress,
    /// The offline speech engines every call's agent uses.
    pub speech: Arc<super::voice::Speech>,
    /// Agents use `agent::instant`'s stand-ins instead (`Settings::instant_speech`).
    pub instant_speech: bool,
    /// The install's default model server for `retell-llm` agents.
    pub llm: crate::llm::LlmServer,
    pub llm_clients: crate::llm::Clients,
    /// The hosted speech providers the install has keys for.
    pub hosted: crate::hosted::HostedSpeech,
}

impl CallRuntimeConfig {
    /// The speech engines a call's agent uses.
    pub fn agent_speech(&self) -> super::voice::AgentSpeech {
        if self.instant_speech { super::voice::AgentSpeech::Instant } else { super::voice::AgentSpeech::Offline(self.speech.clone()) }
    }
}

pub struct CallRuntime {
    pub store: Arc<Store>,
    /// Plans the events of every state change, written with it; wakes their delivery.
    pub webhooks: Arc<Webhooks>,
    /// Concurrency slots and the CPS pacer.
    pub admissions: Arc<crate::admission::Admissions>,
    pub endpoint: sip::Endpoint,
    pub rtp_ports: media::RtpPorts,
    pub config: CallRuntimeConfig,
    /// Cancelled on shutdown: every call task hangs up and ends its call.
    pub shutdown: CancellationToken,
    /// Every call task, so shutdown can wait for them to finish writing their ends.
    pub tracker: TaskTracker,
    /// SIP Call-ID → the owning task's inbox for in-dialog requests.
    dialogs: Mutex<HashMap<String, mpsc::Sender<Incoming>>>,
    /// Call → the token its task watches for a hang-up asked through the API.
    hangups: Mutex<HashMap<CallId, CancellationToken>>,
}

/// Forgets a call's hang-up token when its task is done.
pub struct HangupGuard {
    runtime: Arc<CallRuntime>,
    call_id: CallId,
}

impl Drop for HangupGuard {
    fn drop(&mut self) {
        self.runtime.hangups.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.call_id);
    }
}

/// Removes a dialog's route when the call task is done with it.
pub struct DialogRoute {
    runtime: Arc<CallRuntime>,
    sip_call_id: String,
}

impl Drop for DialogRoute {
    fn drop(&mut self) {
        self.runtime.dialogs.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.sip_call_id);
    }
}

/// How long a registered call waits to be dialed in (`register-phone-call`).
pub const REGISTERED_CALL_TIMEOUT_MS: i64 = 5 * 60 * 1000;

impl CallRuntime {
    /// The shared runtime: the store, the event planner, admission, the SIP endpoint and the
    /// RTP ports, with the settings every call task reads (`CallRuntimeConfig`).
    pub fn new(
        store: Arc<Store>,
        webhooks: Arc<Webhooks>,
        admissions: Arc<crate::admission::Admissions>,
        endpoint: sip::Endpoint,
        rtp_ports: media::RtpPorts,
        config: CallRuntimeConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            webhooks,
            admissions,
            endpoint,
            rtp_ports,
            config,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            dialogs: Mutex::new(HashMap::new()),
            hangups: Mutex::new(HashMap::new()),
        })
    }

    /// The token a call task watches to hang up on request; valid while the guard lives.
    pub fn hangup_token(self: &Arc<Self>, call_id: &CallId) -> (CancellationToken, HangupGuard) {
        let token = CancellationToken::new();
        self.hangups.lock().unwrap_or_else(|p| p.into_inner()).insert(call_id.clone(), token.clone());
        (token, HangupGuard { runtime: self.clone(), call_id: call_id.clone() })
    }

    /// Asks the task owning `call_id` to hang up; `false` if no task owns it.
    pub fn hang_up(&self, call_id: &CallId) -> bool {
        match self.hangups.lock().unwrap_or_else(|p| p.into_inner()).get(call_id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Routes requests with this SIP Call-ID to `inbox` until the returned guard drops.
    pub fn route_dialog(self: &Arc<Self>, sip_call_id: &str, inbox: mpsc::Sender<Incoming>) -> DialogRoute {
        self.dialogs.lock().unwrap_or_else(|p| p.into_inner()).insert(sip_call_id.to_owned(), inbox);
        DialogRoute { runtime: self.clone(), sip_call_id: sip_call_id.to_owned() }
    }

    /// The SIP side's requests that start something or belong to a call.
    pub async fn route_incoming(self: Arc<Self>, mut incoming: mpsc::Receiver<Incoming>) {
        while let Some(request) = incoming.recv().await {
            let inbox = self.dialogs.lock().unwrap_or_else(|p| p.into_inner()).get(request.request.call_id()).cloned();
            if let Some(inbox) = inbox {
                match inbox.try_send(request) {
                    Ok(()) => {}
                    // The call task is behind: the peer hears so, and may retry.
                    Err(mpsc::error::TrySendError::Full(request)) => {
                        tracing::warn!(sip_call_id = request.request.call_id(), "call task is not keeping up; answering 503");
                        if let Some(tx) = &request.tx {
                            let mut busy = Response::to(&request.request, 503, "Service Unavailable");
                            busy.headers.push("Retry-After", "5");
                            tx.respond(busy).await;
                        }
                    }
                    // The call has just ended.
                    Err(mpsc::error::TrySendError::Closed(request)) => {
                        if let Some(tx) = &request.tx {
                            tx.respond(Response::to(&request.request, 481, "Call/Transaction Does Not Exist")).await;
                        }
                    }
                }
                continue;
            }
            match request.request.method {
                Method::Invite => {
                    let runtime = self.clone();
                    self.tracker.spawn(async move { super::inbound::answer(runtime, request).await });
                }
                Method::Options => {
                    if let Some(tx) = &request.tx {
                        let mut ok = Response::to(&request.request, 200, "OK");
                        ok.headers.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
                        tx.respond(ok).await;
                    }
                }
                Method::Ack | Method::Cancel => {}
                _ => {
                    if let Some(tx) = &request.tx {
                        tx.respond(Response::to(&request.request, 481, "Call/Transaction Does Not Exist")).await;
                    }
                }
            }
        }
    }

    /// Marks a call answered (with `patch` merged into its document) and queues its
    /// `call_started` in the same transaction.
    pub async fn mark_ongoing(&self, workspace_id: &WorkspaceId, call_id: &CallId, patch: Document) {
        let planner = self.webhooks.planner(workspace_id).await;
        let plan = move |call: &CallRow| planner.plan(Transition::Started, call);
        match self.store.mark_call_ongoing(workspace_id, call_id, now_ms(), patch, &plan).await {
            Ok(true) => self.webhooks.wake(),
            Ok(false) => tracing::debug!(%call_id, "answered call was no longer registered"),
            Err(err) => tracing::error!(%call_id, error = %err, "could not record that a call was answered"),
        }
    }

    /// Ends a call once, with its basic analysis and its events, logging the outcome with the
    /// same words the API uses. A call with a conversation is then analysed by the model
    /// server, if one is configured (`call_analyzed` waits for it); without one, its
    /// analysis says why it has no summary.
    pub async fn end(self: &Arc<Self>, workspace_id: &WorkspaceId, call_id: &CallId, termination: Termination, mut patch: Document) {
        let Termination { status, reason } = termination;
        let conversation = patch.get("transcript").and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty());
        let target = match conversation {
            true => crate::llm::chat_target(&self.config.llm, &self.store.workspace_settings(workspace_id).await.unwrap_or_default()),
            false => None,
        };
        let mut analysis = super::outcome::basic_analysis(status, reason);
        if conversation && target.is_none() {
            analysis["analysis_error"] = NO_MODEL_SERVER.into();
        }
        patch.entry("call_analysis").or_insert(analysis);
        if target.is_some() {
            patch.insert(ANALYSIS_PENDING.into(), Value::Bool(true));
        }
        let end = CallEnd { status, reason, end_timestamp: now_ms(), document_patch: patch };
        let planner = self.webhooks.planner(workspace_id).await;
        let plan = move |call: &CallRow| planner.plan(Transition::Ended, call);
        match self.store.end_call(workspace_id, call_id, &end, &plan).await {
            Ok(true) => {
                self.webhooks.wake();
                tracing::info!(
                    %workspace_id, %call_id, status = status.as_str(), reason = reason.as_str(),
                    result = termination.result().as_str(), "call.ended"
                );
                if let Some(target) = target {
                    let (rt, workspace_id, call_id) = (self.clone(), workspace_id.clone(), call_id.clone());
                    self.tracker.spawn(async move { rt.analyze(&workspace_id, &call_id, Some(target)).await });
                }
            }
            Ok(false) => tracing::debug!(%call_id, "call had already ended"),
            Err(err) => tracing::error!(%call_id, error = %err, "could not record the end of a call"),
        }
    }

    /// Runs an ended call's post-call analysis and records it with its `call_analyzed`. At
    /// shutdown the analysis is left pending, and the next start runs it again.
    async fn analyze(&self, workspace_id: &WorkspaceId, call_id: &CallId, target: Option<crate::llm::ChatTarget>) {
        let work = async {
            let target = target.ok_or_else(|| NO_MODEL_SERVER.to_owned())?;
            let call = self.store.get_call(workspace_id, call_id).await.map_err(|err| err.to_string())?;
            let transcript = call.document.get("transcript").and_then(Value::as_str).filter(|t| !t.trim().is_empty());
            let transcript = transcript.ok_or("the call's transcript is not kept (its data_storage_setting)")?;
            let agent = call.document.get("effective_agent").and_then(Value::as_object).cloned().unwrap_or_default();
            let questions = crate::llm::analysis::Questions::of_agent(&agent);
            let model = agent
                .get("post_call_analysis_model")
                .and_then(Value::as_str)
                .or_else(|| call.document.get("effective_llm").and_then(|llm| llm.get("model")).and_then(Value::as_str));
            let endpoint = target.endpoint(model);
            let clients = &self.config.llm_clients;
            let http = if target.guarded { &clients.tenant } else { &clients.operator };
            let analysis = crate::llm::analysis::analyze(http, &endpoint, &questions, transcript);
            match tokio::time::timeout(crate::llm::analysis::ANALYSIS_TIMEOUT, analysis).await {
                Ok(result) => result.map(|(analysis, _usage)| analysis),
                Err(_) => Err(format!("the model server did not answer within {:?}", crate::llm::analysis::ANALYSIS_TIMEOUT)),
            }
        };
        let outcome = tokio::select! {
            () = self.shutdown.cancelled() => return,
            outcome = work => outcome,
        };
        let analysis = match outcome {
            Ok(analysis) => analysis,
            Err(why) => {
                tracing::warn!(%call_id, %why, "call.analysis_failed");
                let mut analysis = super::outcome::basic_analysis(CallStatus::Ended, DisconnectionReason::UserHangup);
                analysis["analysis_error"] = why.into();
                analysis
            }
        };
        let mut patch = Document::new();
        patch.insert("call_analysis".into(), analysis);
        let planner = self.webhooks.planner(workspace_id).await;
        let plan = move |call: &CallRow| planner.plan(Transition::Analyzed, call);
        match self.store.record_analysis(workspace_id, call_id, ANALYSIS_PENDING, patch, &plan).await {
            Ok(true) => {
                self.webhooks.wake();
                tracing::info!(%call_id, "call.analyzed");
            }
            Ok(false) => {}
            Err(err) => tracing::error!(%call_id, error = %err, "could not record a call's analysis"),
        }
    }

    /// Queues a transfer's event (`transfer_started`, `_bridged`, `_cancelled`) for an
    /// ongoing call, to targets that opted in.
    pub async fn transfer_event(
        &self,
        workspace_id: &WorkspaceId,
        call_id: &CallId,
        stage: crate::webhooks::TransferStage,
        destination: &str,
    ) {
        let planner = self.webhooks.planner(workspace_id).await;
        let destination = destination.to_owned();
        let plan = move |call: &CallRow| planner.plan_transfer(stage, &destination, call);
        let no_change = |_: &CallRow| Document::new();
        match self.store.update_ongoing_call(workspace_id, call_id, &no_change, &plan).await {
            Ok(true) => self.webhooks.wake(),
            Ok(false) => {}
            Err(err) => tracing::warn!(%call_id, error = %err, "could not queue a transfer event"),
        }
    }

    /// Merges an ongoing call's transcript fields into its document (what its
    /// `data_storage_setting` lets it keep, as the setting stands now) and queues the
    /// `transcript_updated` events its targets opted in to, in one transaction. A call that has
    /// ended meanwhile keeps its final transcript.
    pub async fn transcript_updated(&self, workspace_id: &WorkspaceId, call_id: &CallId, fields: Document) {
        let planner = self.webhooks.planner(workspace_id).await;
        let plan = move |call: &CallRow| planner.plan(Transition::TranscriptUpdated, call);
        let patch_of = move |call: &CallRow| {
            let mut patch = fields.clone();
            super::storage::DataStorage::of_call(&call.document).scrub(&mut patch);
            patch
        };
        match self.store.update_ongoing_call(workspace_id, call_id, &patch_of, &plan).await {
            Ok(true) => self.webhooks.wake(),
            Ok(false) => {}
            Err(err) => tracing::warn!(%call_id, error = %err, "could not record a transcript update"),
        }
    }

    /// The limits in force for a workspace (defaults if its settings cannot be read).
    pub async fn limits(&self, workspace_id: &WorkspaceId) -> crate::domain::limits::Limits {
        let settings = self.store.workspace_settings(workspace_id).await.unwrap_or_default();
        crate::domain::limits::Limits::from_settings(&settings)
    }

    /// At start: calls a previous run left in flight. Undispatched outbound calls are dialed;
    /// calls that were being dialed or talked are ended (their SIP state died with the run).
    pub async fn recover(self: &Arc<Self>) -> anyhow::Result<Vec<(WorkspaceId, CallRow)>> {
        let mut to_dial = Vec::new();
        for (workspace_id, call_id) in self.store.calls_pending_analysis_any_workspace(ANALYSIS_PENDING).await? {
            let settings = self.store.workspace_settings(&workspace_id).await.unwrap_or_default();
            let target = crate::llm::chat_target(&self.config.llm, &settings);
            let rt = self.clone();
            self.tracker.spawn(async move { rt.analyze(&workspace_id, &call_id, target).await });
        }
        for (workspace_id, call, dispatched) in self.store.unfinished_calls_any_workspace().await? {
            if SimulationRecord::is_simulation(&call.document) {
                // The persona lived in the previous run's process: nobody is there to call.
                let record = SimulationRecord::of(&call.document).unwrap_or_else(|| SimulationRecord::running(Value::Null));
                let patch = record.failed("the server restarted during the simulation".into()).patch();
                self.end(&workspace_id, &call.call_id, Termination::error(DisconnectionReason::ErrorUnknown), patch).await;
                continue;
            }
            let registered_for_dial_in = call.document.get("dial_in").is_some();
            match (call.call_status, dispatched, registered_for_dial_in) {
                (CallStatus::Registered, false, false) if call.direction == crate::domain::Direction::Outbound => {
                    to_dial.push((workspace_id, call));
                }
                (CallStatus::Registered, false, true) => {}
                _ => {
                    self.end(&workspace_id, &call.call_id, Termination::error(DisconnectionReason::ErrorUnknown), Document::new()).await;
                }
            }
        }
        Ok(to_dial)
    }

    /// Ends registered dial-in calls that were not dialed within five minutes.
    pub async fn sweep_registered(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let Ok(calls) = self.store.unfinished_calls_any_workspace().await else { continue };
            let cutoff_us = (now_ms() - REGISTERED_CALL_TIMEOUT_MS) * 1000;
            for (workspace_id, call, _) in calls {
                if call.call_status == CallStatus::Registered && call.document.get("dial_in").is_some() && call.created_at < cutoff_us {
                    self.end(&workspace_id, &call.call_id, Termination::error(DisconnectionReason::RegisteredCallTimeout), Document::new())
                        .await;
                }
            }
        }
    }
}
