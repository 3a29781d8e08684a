//! An outbound call's task: dial the number's trunk, answer its challenges, give up ringing
//! with CANCEL, and talk once answered. It ends the call exactly once.

use std::sync::Arc;
use std::time::Duration;

use media::sdp::{self, Codec};
use serde_json::json;
use sip::auth::Challenge;
use sip::dialog::Dialog;
use sip::endpoint::{ClientEvent, Target, TransportKind, new_token};
use sip::{Headers, Method, Request, Response, SipUri};
use tokio::time::Instant;

use super::outcome::DialFailure;
use super::runtime::CallRuntime;
use super::settings::CallSettings;
use super::talk::{Leg, talk};
use super::trunk::{self, DialPlan};
use crate::admission::Ticket;
use crate::domain::{DisconnectionReason, Termination, WorkspaceId, now_ms, sip_header};
use crate::store::{CallRow, Document};

/// How long we wait for the trunk to confirm our CANCEL (487) before giving up.
const CANCEL_GRACE: Duration = Duration::from_secs(32);

/// Dials `call`; `ticket` paces the INVITE and holds the call's concurrency slot until the
/// call has ended.
pub async fn run(rt: Arc<CallRuntime>, workspace_id: WorkspaceId, call: CallRow, mut ticket: Ticket) {
    let (hangup, _guard) = rt.hangup_token(&call.call_id);
    match dial(&rt, &workspace_id, &call, &hangup, &mut ticket).await {
        Some((termination, patch)) => rt.end(&workspace_id, &call.call_id, termination, patch).await,
        // Another task holds the call (or it already ended): it is not ours to end.
        None => tracing::debug!(call_id = %call.call_id, "call already claimed"),
    }
}

async fn dial(
    rt: &Arc<CallRuntime>,
    workspace_id: &WorkspaceId,
    call: &CallRow,
    hangup: &tokio_util::sync::CancellationToken,
    ticket: &mut Ticket,
) -> Option<(Termination, Document)> {
    let failed = |failure: DialFailure| Some((failure.termination(), Document::new()));
    let settings = CallSettings::of(call);
    let simulated = trunk::simulation_plan(call);
    let plan = match simulated.clone() {
        Some(plan) => plan,
        None => {
            let number = match rt.store.get_number(workspace_id, &call.from_number).await {
                Ok(number) => number,
                Err(err) => {
                    tracing::warn!(call_id = %call.call_id, error = %err, "the calling number is gone");
                    return failed(DialFailure::NoRoute);
                }
            };
            match trunk::plan(&rt.store, rt.config.egress, workspace_id, &number).await {
                Ok(plan) => plan,
                Err(err) => {
                    tracing::warn!(call_id = %call.call_id, error = %err, "cannot dial");
                    return failed(DialFailure::NoRoute);
                }
            }
        }
    };
    let socket = match rt.rtp_ports.bind(rt.config.media_bind_ip).await {
        Ok(socket) => socket,
        Err(err) => {
            tracing::error!(call_id = %call.call_id, error = %err, "no RTP port");
            return Some((Termination::error(DisconnectionReason::ErrorUnknown), Document::new()));
        }
    };
    // The simulator's persona is on this host: it reaches the media socket by loopback
    // whatever address the world is told.
    let media_ip = match &simulated {
        Some(plan) if rt.config.media_bind_ip.is_unspecified() => plan.target.addr.ip(),
        Some(_) => rt.config.media_bind_ip,
        None => rt.config.advertised_ip,
    };
    let local_media = match socket.local_addr() {
        Ok(addr) => std::net::SocketAddr::new(media_ip, addr.port()),
        Err(_) => return Some((Termination::error(DisconnectionReason::ErrorUnknown), Document::new())),
    };
    let offer = sdp::offer(local_media, rand::random::<u32>().into(), &[Codec::Pcmu, Codec::Pcma]);
    let mut invite = build_invite(rt, call, &settings, &plan, &offer);
    let sip_call_id = invite.call_id().to_owned();
    let _ = rt.store.set_sip_call_id(workspace_id, &call.call_id, &sip_call_id).await;
    let (inbox_tx, inbox) = tokio::sync::mpsc::channel(32);
    let _route = rt.route_dialog(&sip_call_id, inbox_tx);
    tracing::info!(call_id = %call.call_id, to = %call.to_number, trunk = %plan.target.addr, "call.dialing");

    // The pacer decides the moment the INVITE leaves; ringing is timed from then. The claim
    // in the store is made at that moment (a call is dialed at most once, ever); a durable
    // commit takes milliseconds, so the send's time is confirmed after it (`invite_left`),
    // and the trunk's next INVITE waits for that.
    tokio::select! {
        () = ticket.invite_may_leave() => {}
        () = stop_requested(rt, hangup) => {
            return Some((Termination::not_connected(DisconnectionReason::ManualStopped), Document::new()));
        }
    }
    match rt.store.mark_call_dispatched(workspace_id, &call.call_id, now_ms()).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(err) => {
            tracing::error!(call_id = %call.call_id, error = %err, "could not claim the call for dialing");
            return Some((Termination::error(DisconnectionReason::ErrorUnknown), Document::new()));
        }
    }
    ticket.invite_left();
    let ring_deadline = Instant::now() + settings.ring_duration;
    let mut events = rt.endpoint.send_request(invite.clone(), plan.target).await;
    let (mut answered_challenge, mut got_provisional) = (false, false);
    let mut cancel_deadline: Option<Instant> = None;
    let mut stopping = false;

    let ok = loop {
        tokio::select! {
            event = events.recv() => match event {
                None | Some(ClientEvent::TransportError(_)) => return failed(DialFailure::Unreachable),
                Some(ClientEvent::Timeout) => {
                    return failed(if cancel_deadline.is_some() { DialFailure::RingTimeout } else { DialFailure::Unreachable });
                }
                Some(ClientEvent::Response(response)) => match response.status {
                    100..=199 => got_provisional = true,
                    200..=299 => break response,
                    401 | 407 if !answered_challenge && plan.username.is_some() => {
                        let Some(retry) = with_credentials(rt, &invite, &response, &plan) else {
                            return failed(DialFailure::Rejected { status: response.status, after_our_cancel: false });
                        };
                        answered_challenge = true;
                        invite = retry;
                        events = rt.endpoint.send_request(invite.clone(), plan.target).await;
                    }
                    status => {
                        if stopping {
                            return Some((Termination::not_connected(DisconnectionReason::ManualStopped), Document::new()));
                        }
                        return failed(DialFailure::Rejected { status, after_our_cancel: cancel_deadline.is_some() });
                    }
                },
            },
            () = tokio::time::sleep_until(ring_deadline), if cancel_deadline.is_none() => {
                if !got_provisional {
                    // Not even ringing: the trunk is not answering us at all. Nothing can be
                    // cancelled yet (RFC 3261 §9.1); the INVITE transaction ends by itself.
                    return failed(DialFailure::Unreachable);
                }
                send_cancel(rt, &invite, plan.target).await;
                cancel_deadline = Some(Instant::now() + CANCEL_GRACE);
            }
            () = sleep_until_opt(cancel_deadline) => {
                if stopping {
                    return Some((Termination::not_connected(DisconnectionReason::ManualStopped), Document::new()));
                }
                return failed(DialFailure::RingTimeout);
            }
            () = stop_requested(rt, hangup), if !stopping => {
                stopping = true;
                if !got_provisional {
                    return Some((Termination::not_connected(DisconnectionReason::ManualStopped), Document::new()));
                }
                send_cancel(rt, &invite, plan.target).await;
                cancel_deadline = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    };

    // Answered. Our ACK goes whatever happens next.
    let dialog = match Dialog::from_uac(&invite, &ok) {
        Ok(dialog) => dialog,
        Err(err) => {
            tracing::warn!(call_id = %call.call_id, error = %err, "unusable 2xx");
            return Some((Termination::error(DisconnectionReason::ErrorUnknown), Document::new()));
        }
    };
    let target = in_dialog_target(&dialog, plan.target);
    let ack = dialog.ack(rt.endpoint.via(plan.target.transport));
    rt.endpoint.send_stateless(&ack, target).await;
    let mut leg = Leg {
        dialog,
        target,
        inbox,
        invite_events: Some(events),
        ack: Some(ack),
        local_sdp: offer,
        local_contact: invite.headers.get("contact").unwrap_or_default().to_owned(),
    };
    let answer = String::from_utf8_lossy(&ok.body).into_owned();
    let params = match sdp::negotiate(&answer, &[Codec::Pcmu, Codec::Pcma]) {
        Ok(params) => params,
        Err(err) => {
            tracing::warn!(call_id = %call.call_id, error = %err, "unusable SDP answer");
            super::talk::send_bye(rt, &mut leg).await;
            return Some((Termination::error(DisconnectionReason::ErrorUnknown), Document::new()));
        }
    };
    let identifier = json!({"sip_call_id": sip_call_id});
    rt.mark_ongoing(workspace_id, &call.call_id, Document::from_iter([("telephony_identifier".to_owned(), identifier)])).await;
    tracing::info!(call_id = %call.call_id, codec = params.codec.name(), "call.answered");
    let talked = talk(rt, workspace_id, call, &settings, &mut leg, socket, params, hangup).await;
    let mut patch = talked.patch;
    patch.insert("telephony_identifier".into(), json!({"sip_call_id": sip_call_id}));
    Some((Termination::after_connect(talked.reason), patch))
}

fn build_invite(rt: &CallRuntime, call: &CallRow, settings: &CallSettings, plan: &DialPlan, sdp_offer: &str) -> Request {
    let transport_param = if plan.target.transport == TransportKind::Tcp { ";transport=tcp" } else { "" };
    let uri = format!("sip:{}@{}{transport_param}", call.to_number, plan.uri_host);
    let local = rt.endpoint.local_addr();
    let mut headers = Headers::new();
    headers.push("Via", rt.endpoint.via(plan.target.transport));
    headers.push("Max-Forwards", "70");
    headers.push("From", format!("<sip:{}@{}>;tag={}", call.from_number, plan.uri_host, new_token()));
    headers.push("To", format!("<sip:{}@{}>", call.to_number, plan.uri_host));
    headers.push("Call-ID", format!("{}@uponai", new_token()));
    headers.push("CSeq", "1 INVITE");
    headers.push("Contact", format!("<sip:{}@{}:{}{transport_param}>", call.from_number, rt.config.advertised_ip, local.port()));
    headers.push("User-Agent", "uponai");
    headers.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
    for (name, value) in extra_headers(&plan.provider_headers, &settings.custom_sip_headers) {
        headers.push(name, value);
    }
    headers.push("Content-Type", "application/sdp");
    Request { method: Method::Invite, uri, headers, body: sdp_offer.as_bytes().to_vec() }
}

/// The provider's preset headers and the call's `custom_sip_headers`. They were checked at
/// the API edge; they are checked again so that a row written any other way (an older
/// version, a hand edit) cannot put a line break on the wire: an unsafe one is dropped.
fn extra_headers<'a>(provider: &'a [(String, String)], custom: &'a [(String, String)]) -> Vec<(&'a str, &'a str)> {
    provider
        .iter()
        .chain(custom)
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .filter(|(name, value)| {
            let safe = sip_header::check_header_name(name).is_ok() && sip_header::check_header_value(value).is_ok();
            if !safe {
                tracing::warn!(header = ?name, "header dropped: not a safe SIP header");
            }
            safe
        })
        .collect()
}

/// The INVITE again with the digest answer, a new branch and the next CSeq.
fn with_credentials(rt: &CallRuntime, invite: &Request, challenge: &Response, plan: &DialPlan) -> Option<Request> {
    let (challenge_header, answer_header) =
        if challenge.status == 407 { ("proxy-authenticate", "Proxy-Authorization") } else { ("www-authenticate", "Authorization") };
    let challenge = Challenge::parse(challenge.headers.get(challenge_header)?).ok()?;
    let answer =
        challenge.answer("INVITE", &invite.uri, plan.username.as_deref()?, plan.password.as_deref().unwrap_or_default(), &new_token(), 1);
    let mut retry = invite.clone();
    let (cseq, _) = invite.cseq();
    retry.headers.set("Via", rt.endpoint.via(plan.target.transport));
    retry.headers.set("CSeq", format!("{} INVITE", cseq + 1));
    retry.headers.set(answer_header, answer);
    Some(retry)
}

/// CANCEL for a pending INVITE: same branch, Call-ID, From, To and CSeq number.
async fn send_cancel(rt: &CallRuntime, invite: &Request, target: Target) {
    let mut headers = Headers::new();
    for name in ["via", "max-forwards", "from", "to", "call-id"] {
        if let Some(value) = invite.headers.get(name) {
            headers.push(name, value);
        }
    }
    headers.push("CSeq", format!("{} CANCEL", invite.cseq().0));
    let cancel = Request { method: Method::Cancel, uri: invite.uri.clone(), headers, body: Vec::new() };
    // The CANCEL's own 200 needs no handling (the INVITE's 487 ends the dial), but its
    // transaction must live to retransmit, so its events are drained until it ends.
    let mut events = rt.endpoint.send_request(cancel, target).await;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

/// In-dialog requests go to the peer's Contact when it is an address we can reach directly,
/// else back through the trunk.
fn in_dialog_target(dialog: &Dialog, trunk: Target) -> Target {
    let contact: &SipUri = &dialog.remote_target;
    if !dialog.route_set.is_empty() {
        return trunk;
    }
    match contact.host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(ip) => Target { addr: std::net::SocketAddr::new(ip, contact.port.unwrap_or(5060)), transport: trunk.transport },
        Err(_) => trunk,
    }
}

/// Shutdown, or a hang-up asked through the API, while still dialing.
async fn stop_requested(rt: &CallRuntime, hangup: &tokio_util::sync::CancellationToken) {
    tokio::select! {
        () = rt.shutdown.cancelled() => {}
        () = hangup.cancelled() => {}
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_value_with_crlf_never_reaches_the_wire() {
        let document: Document = serde_json::from_value(json!({"custom_sip_headers": {
            "X-Evil": "a\r\nVia: SIP/2.0/UDP attacker.example",
            "X-Nul": "a\u{0}b",
            "Bad Name": "x",
            "X-Good": "kept",
        }}))
        .unwrap();
        let provider = vec![("X-Telnyx-Username".to_owned(), "alice\r\nX-Injected: 1".to_owned())];
        let mut headers = Headers::new();
        for (name, value) in extra_headers(&provider, &CallSettings::from_document(&document).custom_sip_headers) {
            headers.push(name, value);
        }
        let invite = Request { method: Method::Invite, uri: "sip:+12125550123@t.example.com".into(), headers, body: Vec::new() };
        let wire = String::from_utf8(invite.to_bytes()).unwrap();
        assert!(wire.contains("X-Good: kept\r\n"), "{wire}");
        for injected in ["attacker.example", "X-Injected", "X-Evil", "X-Nul", "Bad Name"] {
            assert!(!wire.contains(injected), "{injected} reached the wire: {wire:?}");
        }
    }
}
