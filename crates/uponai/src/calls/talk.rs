//! The connected part of a call, the same whichever side dialed: media runs, the voice agent
//! converses, and the first of hang-up, the agent's end, timeout, silence or shutdown ends it.

use std::sync::Arc;
use std::time::Duration;

use agent::AgentEvent;
use media::session::{MediaChannels, Recording, SessionConfig};
use media::{MediaEvent, MediaParams, MediaSession, MediaStats};
use serde_json::json;
use sip::dialog::Dialog;
use sip::endpoint::{ClientEvent, Target};
use sip::{Incoming, Method, Request, Response};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conversation::{self, MediaMouth};
use super::runtime::CallRuntime;
use super::settings::CallSettings;
use super::storage::DataStorage;
use super::transfer;
use crate::domain::{DisconnectionReason, WorkspaceId};
use crate::store::{CallRow, Document};

/// The SIP side of a connected call.
pub struct Leg {
    pub dialog: Dialog,
    /// Where in-dialog requests go.
    pub target: Target,
    /// In-dialog requests from the peer.
    pub inbox: mpsc::Receiver<Incoming>,
    /// UAC only: the INVITE's transaction, which may repeat its 2xx until our ACK lands.
    pub invite_events: Option<mpsc::UnboundedReceiver<ClientEvent>>,
    /// UAC only: our ACK, sent again for each repeated 2xx.
    pub ack: Option<Request>,
    /// Our SDP, repeated in answers to session refreshes.
    pub local_sdp: String,
    /// Our Contact header value.
    pub local_contact: String,
}

pub struct Talked {
    pub reason: DisconnectionReason,
    pub stats: MediaStats,
    /// Document fields naming the recording files.
    pub patch: Document,
}

/// Carries out the agent's cold transfer to `to`, with its events; `true`: the call was
/// transferred and we have left it. Otherwise the agent stays on the call, and is told.
async fn transfer_call(
    rt: &Arc<CallRuntime>,
    workspace_id: &WorkspaceId,
    call: &CallRow,
    leg: &mut Leg,
    running: &conversation::RunningAgent,
    to: &str,
) -> bool {
    use crate::webhooks::TransferStage;
    let refer_to = match transfer::refer_to(to, &leg.dialog.remote) {
        Ok(refer_to) => refer_to,
        Err(err) => {
            tracing::warn!(call_id = %call.call_id, error = %err, "call.transfer_refused");
            action_failed(running, err.to_string()).await;
            return false;
        }
    };
    rt.transfer_event(workspace_id, &call.call_id, TransferStage::Started, to).await;
    match transfer::refer(rt, leg, &refer_to).await {
        Ok(outcome) => {
            tracing::info!(call_id = %call.call_id, %refer_to, ?outcome, "call.transferred");
            rt.transfer_event(workspace_id, &call.call_id, TransferStage::Bridged, to).await;
            if outcome == transfer::Transferred::Leave {
                send_bye(rt, leg).await;
            }
            true
        }
        Err(err) => {
            tracing::warn!(call_id = %call.call_id, error = %err, "call.transfer_failed");
            rt.transfer_event(workspace_id, &call.call_id, TransferStage::Cancelled, to).await;
            action_failed(running, err.to_string()).await;
            false
        }
    }
}

/// Tells the agent a transfer it asked for did not happen.
async fn action_failed(running: &conversation::RunningAgent, reason: String) {
    let heard = agent::Heard::ActionFailed { action: "transfer".into(), reason };
    let _ = tokio::time::timeout(Duration::from_secs(1), running.heard.send(heard)).await;
}

/// Runs the call until it ends; sends BYE when the end is ours.
#[allow(clippy::too_many_arguments)] // The call's context, its leg and its media: one of each.
pub async fn talk(
    rt: &Arc<CallRuntime>,
    workspace_id: &WorkspaceId,
    call: &CallRow,
    settings: &CallSettings,
    leg: &mut Leg,
    socket: UdpSocket,
    params: MediaParams,
    hangup: &CancellationToken,
) -> Talked {
    let stereo = rt.config.recordings_dir.join(format!("{}.stereo.wav", call.call_id));
    let mono = rt.config.recordings_dir.join(format!("{}.wav", call.call_id));
    // A call whose storage setting keeps no recording never writes one.
    let storage = DataStorage::of_call(&call.document);
    let recording = storage
        .keeps_recording()
        .then(|| std::fs::create_dir_all(&rt.config.recordings_dir).ok().map(|()| Recording { stereo: stereo.clone(), mono: mono.clone() }))
        .flatten();
    let (to_agent_tx, mut to_agent_rx) = mpsc::channel(50);
    let (from_agent_tx, from_agent_rx) = mpsc::channel(50);
    let (dtmf_tx, dtmf_rx) = mpsc::channel(16);
    let (events_tx, mut events) = mpsc::channel(64);
    let config = SessionConfig { no_audio_timeout: rt.config.no_audio_timeout, jitter_depth: 3, recording: recording.clone() };
    let gate = media::PlayoutGate::new();
    let channels =
        MediaChannels { to_agent: to_agent_tx, from_agent: from_agent_rx, gate: gate.clone(), dtmf_out: dtmf_rx, events: events_tx };
    let session = match MediaSession::start(socket, params, config, channels) {
        Ok(session) => session,
        Err(err) => {
            tracing::error!(call_id = %call.call_id, error = %err, "could not start media");
            send_bye(rt, leg).await;
            return Talked { reason: DisconnectionReason::ErrorUnknown, stats: MediaStats::default(), patch: Document::new() };
        }
    };

    let mouth = Arc::new(MediaMouth { frames: from_agent_tx, gate, dtmf: dtmf_tx });
    let usage = crate::llm::retell_llm::UsageLog::default();
    let rtt = crate::llm::custom_llm::RttLog::default();
    let target = match settings.llm.is_some() || settings.flow.is_some() {
        true => {
            let workspace = rt.store.workspace_settings(workspace_id).await.unwrap_or_default();
            crate::llm::chat_target(&rt.config.llm, &workspace)
        }
        false => None,
    };
    let access = conversation::EngineAccess {
        target,
        clients: rt.config.llm_clients.clone(),
        egress: rt.config.egress,
        usage: usage.clone(),
        rtt: rtt.clone(),
    };
    let (agent_settings, engine) = conversation::engine(call, settings, access);
    let voices = conversation::CallVoices::choose(settings, &rt.config.hosted, &rt.config.llm_clients.operator);
    let mut running = conversation::start(rt.config.agent_speech(), agent_settings, voices, engine, mouth);
    // Caller audio goes to the agent from a task of its own, so that the call loop is never
    // paced by the agent; the media task drops (and counts) frames the agent has no room for.
    let heard = running.heard.clone();
    let forward = tokio::spawn(async move {
        while let Some(frame) = to_agent_rx.recv().await {
            if heard.send(conversation::heard(frame)).await.is_err() {
                break;
            }
        }
    });

    let mut transferred_to = None;
    let max_duration = tokio::time::sleep(settings.max_call_duration);
    tokio::pin!(max_duration);

    let reason = loop {
        tokio::select! {
            () = rt.shutdown.cancelled() => {
                send_bye(rt, leg).await;
                break DisconnectionReason::ManualStopped;
            }
            () = hangup.cancelled() => {
                send_bye(rt, leg).await;
                break DisconnectionReason::ManualStopped;
            }
            () = &mut max_duration => {
                send_bye(rt, leg).await;
                break DisconnectionReason::MaxDurationReached;
            }
            event = events.recv() => match event {
                Some(MediaEvent::NoAudio) => {
                    send_bye(rt, leg).await;
                    break DisconnectionReason::ErrorNoAudioReceived;
                }
                Some(MediaEvent::Dtmf(digit)) => {
                    tracing::info!(call_id = %call.call_id, %digit, "call.dtmf");
                    let heard = agent::Heard::Dtmf { at: session.elapsed(), digit };
                    let _ = tokio::time::timeout(Duration::from_secs(1), running.heard.send(heard)).await;
                }
                Some(MediaEvent::Playout(event)) => {
                    // Reports are few; the agent reads its input all the time.
                    let _ = tokio::time::timeout(Duration::from_secs(1), running.heard.send(conversation::heard_playout(event))).await;
                }
                None => {}
            },
            Some(event) = running.events.recv() => match event {
                AgentEvent::End(end) => {
                    tracing::info!(call_id = %call.call_id, ?end, "call.agent_ended");
                    send_bye(rt, leg).await;
                    break conversation::reason(&end);
                }
                AgentEvent::Transfer { to } => {
                    if transfer_call(rt, workspace_id, call, leg, &running, &to).await {
                        transferred_to = Some(to);
                        break DisconnectionReason::CallTransfer;
                    }
                }
                AgentEvent::TranscriptUpdated(conversation) => {
                    // Get Call shows the transcript as it grows, and opted-in webhooks hear of
                    // each utterance.
                    rt.transcript_updated(workspace_id, &call.call_id, conversation::document_fields(&conversation)).await;
                }
            },
            request = leg.inbox.recv() => {
                let Some(request) = request else { continue };
                if on_request(leg, request).await {
                    break DisconnectionReason::UserHangup;
                }
            }
            Some(event) = recv_invite_event(&mut leg.invite_events) => {
                if let (ClientEvent::Response(response), Some(ack)) = (event, &leg.ack)
                    && (200..300).contains(&response.status) {
                        rt.endpoint.send_stateless(ack, leg.target).await;
                    }
            }
        }
    };
    running.cancel.cancel();
    forward.abort();
    let conversation = running.task.await.unwrap_or_default();
    let stats = session.stop().await;
    let mut patch = conversation::document_fields(&conversation);
    if let Some(usage) = conversation::token_usage(&usage) {
        patch.insert("llm_token_usage".into(), usage);
    }
    conversation::add_network_rtt(&mut patch, &rtt);
    if conversation.n_stuck_turns > 0 {
        tracing::warn!(call_id = %call.call_id, n = conversation.n_stuck_turns, "call.stuck_turns");
    }
    patch.insert(
        "media_stats".into(),
        json!({
            "packets_sent": stats.n_sent,
            "packets_received": stats.n_received,
            "packets_lost": stats.n_lost,
            "packets_rejected_source": stats.n_rejected_source,
            "packets_rejected_ssrc": stats.n_rejected_ssrc,
            "ssrc_restarts": stats.n_ssrc_restarts,
            "agent_frames_dropped": stats.n_agent_frames_dropped,
            "caller_frames_dropped": stats.n_caller_frames_dropped,
            "latched_to": stats.latched_to.map(|addr| addr.to_string()),
            "send_jitter_p50_ms": stats.send_jitter_quantile_us(0.50) as f64 / 1000.0,
            "send_jitter_p99_ms": stats.send_jitter_quantile_us(0.99) as f64 / 1000.0,
            "send_jitter_max_ms": stats.send_jitter_quantile_us(1.0) as f64 / 1000.0,
        }),
    );
    if recording.is_some() {
        patch.insert("recording_file".into(), json!(file_name(&mono)));
        patch.insert("recording_multi_channel_file".into(), json!(file_name(&stereo)));
    }
    if let Some(to) = transferred_to {
        patch.insert("transfer_destination".into(), json!(to));
    }
    storage.scrub(&mut patch);
    Talked { reason, stats, patch }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

async fn recv_invite_event(events: &mut Option<mpsc::UnboundedReceiver<ClientEvent>>) -> Option<ClientEvent> {
    match events {
        Some(rx) => {
            let event = rx.recv().await;
            if event.is_none() {
                *events = None;
            }
            event
        }
        None => std::future::pending().await,
    }
}

/// Answers one in-dialog request; `true` when it was the peer's BYE. The router matched it
/// by Call-ID only; a request without both of the dialog's tags is not the peer's (481).
pub(super) async fn on_request(leg: &Leg, incoming: Incoming) -> bool {
    let Some(tx) = incoming.tx else { return false };
    let request = incoming.request;
    if !leg.dialog.matches(&request) {
        tracing::info!(source = %incoming.source.addr, method = %request.method, "in-dialog request with the wrong tags refused");
        tx.respond(Response::to(&request, 481, "Call/Transaction Does Not Exist")).await;
        return false;
    }
    match request.method {
        Method::Bye => {
            tx.respond(Response::to(&request, 200, "OK")).await;
            true
        }
        Method::Invite => {
            // A session refresh or hold: keep the media as negotiated.
            let mut ok = Response::to(&request, 200, "OK");
            ok.headers.set("To", leg.dialog.local.clone());
            ok.headers.push("Contact", leg.local_contact.clone());
            ok.headers.push("Content-Type", "application/sdp");
            ok.body = leg.local_sdp.clone().into_bytes();
            tx.respond(ok).await;
            false
        }
        _ => {
            tx.respond(Response::to(&request, 200, "OK")).await;
            false
        }
    }
}

/// Sends BYE and waits briefly for its answer (the call ends either way).
pub async fn send_bye(rt: &Arc<CallRuntime>, leg: &mut Leg) {
    let bye = leg.dialog.request(Method::Bye, rt.endpoint.via(leg.target.transport));
    let mut events = rt.endpoint.send_request(bye, leg.target).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.recv().await {
            match event {
                ClientEvent::Response(r) if r.status < 200 => continue,
                _ => break,
            }
        }
    })
    .await;
}
