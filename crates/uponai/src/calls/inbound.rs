//! Answering: an INVITE to one of our numbers (from that number's trunk, with an inbound
//! agent bound) or to `sip:{call_id}@…` of a registered call becomes a call task.

use std::sync::Arc;

use media::sdp;
use serde_json::json;
use sip::dialog::Dialog;
use sip::endpoint::{Target, TransportKind, new_token};
use sip::{Incoming, NameAddr, Request, Response, ServerTxHandle, SipUri};

use super::create::{CallLeg, CreateCallError, NewCall, create_call};
use super::runtime::{CallRuntime, REGISTERED_CALL_TIMEOUT_MS};
use super::settings::CallSettings;
use super::talk::{Leg, talk};
use super::trunk;
use crate::domain::{CallId, CallStatus, DisconnectionReason, Termination, WorkspaceId, now_ms};
use crate::store::{CallRow, Document, NumberRow};

pub async fn answer(rt: Arc<CallRuntime>, incoming: Incoming) {
    let Some(tx) = incoming.tx else { return };
    let request = incoming.request;
    let reject = |status: u16, reason: &'static str| {
        let tx = tx.clone();
        let response = Response::to(&request, status, reason);
        async move { tx.respond(response).await }
    };
    let Some(user) = SipUri::parse(&request.uri).ok().and_then(|uri| uri.user) else {
        return reject(404, "Not Found").await;
    };

    let (workspace_id, call) = if let Some(call_id) = CallId::parse(&user) {
        match registered_call(&rt, &call_id).await {
            Some(found) => found,
            None => return reject(404, "Not Found").await,
        }
    } else {
        let (workspace_id, number_row) = match dialed_number(&rt, &user, incoming.source.addr.ip()).await {
            Ok(found) => found,
            Err(Refusal::NoSuchNumber) => return reject(404, "Not Found").await,
            Err(Refusal::NotItsTrunk) => {
                tracing::warn!(source = %incoming.source.addr, number = %user, "call.refused: source is not the number's trunk");
                return reject(403, "Forbidden").await;
            }
            Err(Refusal::Ambiguous) => {
                tracing::warn!(source = %incoming.source.addr, number = %user, "call.refused: the number is held by more than one workspace");
                return reject(403, "Forbidden").await;
            }
        };
        let caller =
            request.headers.get("from").and_then(|from| NameAddr::parse(from).ok()).and_then(|from| from.uri.user).unwrap_or_default();
        let new_call = NewCall {
            leg: CallLeg::Inbound { from_number: caller, to_number: number_row.phone_number.clone() },
            override_agent_id: None,
            override_agent_version: None,
            agent_override: Document::new(),
            retell_llm_override: Document::new(),
            metadata: None,
            dynamic_variables: None,
            idempotency_key: None,
            extra: Document::new(),
        };
        match create_call(&rt.store, &workspace_id, new_call, rand::random::<f64>()).await {
            Ok((call, _)) => (workspace_id, call),
            Err(CreateCallError::Invalid { problem, .. }) => {
                tracing::info!(number = %number_row.phone_number, %problem, "call.refused");
                return reject(403, "Forbidden").await;
            }
            Err(CreateCallError::Store(err)) => {
                tracing::error!(error = %err, "could not record an inbound call");
                return reject(500, "Server Internal Error").await;
            }
        }
    };
    // A concurrency slot, held until the call ends; at the limit the caller hears ringing
    // while we wait for one, then goes to the number's fallback or is refused.
    let Some(_slot) = wait_for_slot(&rt, &workspace_id, &request, &tx).await else {
        let fallback = rt
            .store
            .get_number(&workspace_id, &call.to_number)
            .await
            .ok()
            .and_then(|number| number.document.get("fallback_number").and_then(|f| f.as_str().map(str::to_owned)));
        let reason = match fallback {
            Some(fallback) => {
                let mut moved = Response::to(&request, 302, "Moved Temporarily");
                let host = SipUri::parse(&request.uri).map(|uri| uri.host_port()).unwrap_or_default();
                moved.headers.push("Contact", format!("<sip:{fallback}@{host}>"));
                tx.respond(moved).await;
                DisconnectionReason::NoConcurrencyFallback
            }
            None => {
                tx.respond(Response::to(&request, 486, "Busy Here")).await;
                DisconnectionReason::ConcurrencyLimitReached
            }
        };
        tracing::info!(call_id = %call.call_id, reason = reason.as_str(), "call.refused: concurrency limit");
        rt.end(&workspace_id, &call.call_id, Termination::error(reason), Document::new()).await;
        return;
    };
    let (hangup, _guard) = rt.hangup_token(&call.call_id);
    let (termination, patch) = accept(&rt, &workspace_id, &call, &request, incoming.source, &tx, &hangup).await;
    rt.end(&workspace_id, &call.call_id, termination, patch).await;
}

/// Why an INVITE to a number is not routed.
enum Refusal {
    /// No workspace holds the number (404).
    NoSuchNumber,
    /// The source is not the trunk of the workspace holding it (403).
    NotItsTrunk,
    /// Trunks of two workspaces admit the source for two spellings of the number, which
    /// `insert_number` prevents but an older database may hold (403): never guess a tenant.
    Ambiguous,
}

/// The number an INVITE's Request-URI user names, with its workspace: the row (either
/// spelling, `+1555…` or `1555…`) whose trunk allow-list admits `source`. The number is what
/// picks the workspace, and only that workspace's trunk may use it.
async fn dialed_number(rt: &Arc<CallRuntime>, user: &str, source: std::net::IpAddr) -> Result<(WorkspaceId, NumberRow), Refusal> {
    let candidates = rt.store.find_dialed_number_any_workspace(user).await.map_err(|err| {
        tracing::error!(error = %err, "could not look up an inbound number");
        Refusal::NoSuchNumber
    })?;
    if candidates.is_empty() {
        return Err(Refusal::NoSuchNumber);
    }
    let mut admitted = Vec::new();
    for (workspace_id, number) in candidates {
        if let Ok(plan) = trunk::plan(&rt.store, rt.config.egress, &workspace_id, &number).await
            && plan.allowed_sources.iter().any(|net| net.contains(source))
        {
            admitted.push((workspace_id, number));
        }
    }
    if admitted.iter().any(|(workspace_id, _)| *workspace_id != admitted[0].0) {
        return Err(Refusal::Ambiguous);
    }
    // One workspace: the exact spelling if it holds both.
    let exact = admitted.iter().position(|(_, number)| number.phone_number == user).unwrap_or(0);
    if admitted.is_empty() { Err(Refusal::NotItsTrunk) } else { Ok(admitted.swap_remove(exact)) }
}

/// A concurrency slot for an inbound call, waiting (ringing) up to the queue time for one.
async fn wait_for_slot(
    rt: &Arc<CallRuntime>,
    workspace_id: &WorkspaceId,
    invite: &Request,
    tx: &ServerTxHandle,
) -> Option<crate::admission::Ticket> {
    let limits = rt.limits(workspace_id).await;
    if let Some(slot) = rt.admissions.try_inbound_slot(workspace_id, &limits) {
        return Some(slot);
    }
    let mut ringing = Response::to(invite, 180, "Ringing");
    ringing.headers.set("To", format!("{};tag={}", invite.headers.get("to").unwrap_or_default(), new_token()));
    tx.respond(ringing).await;
    let deadline = tokio::time::Instant::now() + rt.config.inbound_queue;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if let Some(slot) = rt.admissions.try_inbound_slot(workspace_id, &limits) {
            return Some(slot);
        }
    }
    None
}

/// A registered dial-in call still waiting, or `None` (answered 404). A call dialed in too
/// late is ended `registered_call_timeout`.
async fn registered_call(rt: &Arc<CallRuntime>, call_id: &CallId) -> Option<(WorkspaceId, CallRow)> {
    let (workspace_id, call) = rt.store.find_call_any_workspace(call_id).await.ok()??;
    if call.call_status != CallStatus::Registered || call.document.get("dial_in").is_none() {
        return None;
    }
    if call.created_at / 1000 < now_ms() - REGISTERED_CALL_TIMEOUT_MS {
        rt.end(&workspace_id, call_id, Termination::error(DisconnectionReason::RegisteredCallTimeout), Document::new()).await;
        return None;
    }
    // Claim it, so a second INVITE for the same id cannot join too.
    rt.store.mark_call_dispatched(&workspace_id, call_id, now_ms()).await.ok()?.then_some((workspace_id, call))
}

async fn accept(
    rt: &Arc<CallRuntime>,
    workspace_id: &WorkspaceId,
    call: &CallRow,
    invite: &Request,
    source: Target,
    tx: &ServerTxHandle,
    hangup: &tokio_util::sync::CancellationToken,
) -> (Termination, Document) {
    let failed = || (Termination::error(DisconnectionReason::ErrorUnknown), Document::new());
    let Ok(socket) = rt.rtp_ports.bind(rt.config.media_bind_ip).await else {
        tx.respond(Response::to(invite, 503, "Service Unavailable")).await;
        return failed();
    };
    let Ok(local) = socket.local_addr() else { return failed() };
    let offer = String::from_utf8_lossy(&invite.body).into_owned();
    let local_media = std::net::SocketAddr::new(rt.config.advertised_ip, local.port());
    let (answer_sdp, params) = match sdp::answer(&offer, local_media, rand::random::<u32>().into()) {
        Ok(answer) => answer,
        Err(err) => {
            tracing::info!(call_id = %call.call_id, error = %err, "call.refused: no usable media offer");
            tx.respond(Response::to(invite, 488, "Not Acceptable Here")).await;
            return (Termination::error(DisconnectionReason::ErrorUnknown), Document::new());
        }
    };
    let local_tag = new_token();
    let Ok(dialog) = Dialog::from_uas(invite, &local_tag) else {
        tx.respond(Response::to(invite, 400, "Bad Request")).await;
        return failed();
    };
    let transport_param = if source.transport == TransportKind::Tcp { ";transport=tcp" } else { "" };
    let contact = format!("<sip:{}@{}:{}{transport_param}>", call.to_number, rt.config.advertised_ip, rt.endpoint.local_addr().port());
    let (inbox_tx, inbox) = tokio::sync::mpsc::channel(32);
    let _route = rt.route_dialog(invite.call_id(), inbox_tx);
    let mut ok = Response::to(invite, 200, "OK");
    ok.headers.set("To", dialog.local.clone());
    ok.headers.push("Contact", contact.clone());
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = answer_sdp.clone().into_bytes();
    tx.respond(ok).await;
    let identifier = json!({"sip_call_id": invite.call_id()});
    rt.mark_ongoing(workspace_id, &call.call_id, Document::from_iter([("telephony_identifier".to_owned(), identifier)])).await;
    tracing::info!(%workspace_id, call_id = %call.call_id, from = %call.from_number, "call.answered");

    // Replies go back where the INVITE came from (that is the trunk, or its connection).
    let mut leg = Leg { dialog, target: source, inbox, invite_events: None, ack: None, local_sdp: answer_sdp, local_contact: contact };
    let talked = talk(rt, workspace_id, call, &CallSettings::of(call), &mut leg, socket, params, hangup).await;
    let mut patch = talked.patch;
    patch.insert("telephony_identifier".into(), json!({"sip_call_id": invite.call_id()}));
    (Termination::after_connect(talked.reason), patch)
}
