//! Cold transfer by SIP REFER (RFC 3515): the agent asks the other side (the trunk) to call
//! the destination and replace us; once it has accepted, and its NOTIFY has not reported a
//! failure, we leave the call (`call_transfer`).
//!
//! The destination comes from the agent's configuration, filled with the call's dynamic
//! variables: tenant text. It becomes a `Refer-To` header only as a phone number (digits, an
//! optional leading `+`) or a parsed `sip:`/`sips:` URI, re-printed from its parts.

use std::sync::Arc;
use std::time::Duration;

use sip::endpoint::ClientEvent;
use sip::uri::NameAddr;
use sip::{Method, SipUri};

use super::runtime::CallRuntime;
use super::talk::{Leg, on_request};
use crate::domain::sip_header;

/// How long the other side has to answer the REFER (Timer F: 64 × T1).
const REFER_TIMEOUT: Duration = Duration::from_secs(32);
/// How long we wait for the NOTIFY that says how the new call went, after the REFER was
/// accepted. Trunks that send none (or only `100 Trying`) are taken at their 202.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a transfer did not happen; the call goes on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferFailed {
    #[error("destination {0:?} is neither a phone number nor a sip: URI")]
    BadDestination(String),
    #[error("the other side answered the REFER with {0}")]
    Refused(u16),
    #[error("the other side did not answer the REFER")]
    NoAnswer,
    #[error("the transferred call failed: {0}")]
    Failed(String),
}

/// How a transfer went.
#[derive(Debug, PartialEq, Eq)]
pub enum Transferred {
    /// We are to hang up (the REFER was accepted, and no failure was reported).
    Leave,
    /// The other side hung up on us while the transfer completed.
    PeerLeft,
}

/// The `Refer-To` value for `destination`: a number goes to the host the call's peer is at
/// (the trunk), a SIP URI as given.
pub fn refer_to(destination: &str, peer: &str) -> Result<String, TransferFailed> {
    let bad = || TransferFailed::BadDestination(destination.chars().take(100).collect());
    let destination = destination.trim();
    let digits = destination.strip_prefix('+').unwrap_or(destination);
    let uri = if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        let host = NameAddr::parse(peer).map_err(|_| bad())?.uri.host_port();
        SipUri { secure: false, user: Some(destination.to_owned()), host, port: None, params: Vec::new() }.to_string()
    } else {
        SipUri::parse(destination).map_err(|_| bad())?.to_string()
    };
    let value = format!("<{uri}>");
    sip_header::check_header_value(&value).map_err(|_| bad())?;
    Ok(value)
}

/// Sends REFER and waits for its outcome, answering in-dialog requests meanwhile.
pub async fn refer(rt: &Arc<CallRuntime>, leg: &mut Leg, refer_to: &str) -> Result<Transferred, TransferFailed> {
    let mut request = leg.dialog.request(Method::Other("REFER".into()), rt.endpoint.via(leg.target.transport));
    request.headers.push("Refer-To", refer_to);
    request.headers.push("Contact", leg.local_contact.clone());
    let mut events = rt.endpoint.send_request(request, leg.target).await;
    let status = tokio::time::timeout(REFER_TIMEOUT, async {
        while let Some(event) = events.recv().await {
            match event {
                ClientEvent::Response(response) if response.status < 200 => continue,
                ClientEvent::Response(response) => return Some(response.status),
                _ => return None,
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or(TransferFailed::NoAnswer)?;
    if !(200..300).contains(&status) {
        return Err(TransferFailed::Refused(status));
    }
    // Accepted: the NOTIFYs (a `message/sipfrag` status line each) say how the new call goes.
    let deadline = tokio::time::Instant::now() + NOTIFY_TIMEOUT;
    loop {
        let Ok(Some(incoming)) = tokio::time::timeout_at(deadline, leg.inbox.recv()).await else {
            return Ok(Transferred::Leave);
        };
        let request = &incoming.request;
        let is_notify = matches!(&request.method, Method::Other(name) if name.eq_ignore_ascii_case("NOTIFY"));
        let status = (is_notify && leg.dialog.matches(request)).then(|| sipfrag_status(&request.body)).flatten();
        // Answered as during the rest of the call (a re-INVITE gets our SDP, a stranger 481).
        if on_request(leg, incoming).await {
            return Ok(Transferred::PeerLeft);
        }
        match status {
            Some(code) if code < 200 => continue,
            Some(code) if code < 300 => return Ok(Transferred::Leave),
            Some(code) => return Err(TransferFailed::Failed(format!("the destination answered {code}"))),
            None => continue,
        }
    }
}

/// The status code of a `message/sipfrag` body's first line (`SIP/2.0 200 OK`).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body.get(..body.len().min(200))?).ok()?;
    let line = text.lines().next()?.trim();
    let mut parts = line.split_whitespace();
    (parts.next()? == "SIP/2.0").then_some(())?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_referred_to_the_peer_s_host_and_a_uri_as_given() {
        let peer = "<sip:+12125550123@trunk.example.com:5080>;tag=abc";
        assert_eq!(refer_to("+14155550199", peer).unwrap(), "<sip:+14155550199@trunk.example.com:5080>");
        assert_eq!(refer_to(" 4155550199 ", peer).unwrap(), "<sip:4155550199@trunk.example.com:5080>");
        assert_eq!(refer_to("sip:desk@pbx.example.com;transport=tcp", peer).unwrap(), "<sip:desk@pbx.example.com;transport=tcp>");
    }

    #[test]
    fn anything_else_is_refused_before_it_reaches_a_header() {
        let peer = "<sip:+12125550123@trunk.example.com>;tag=abc";
        for hostile in [
            "+1415\r\nX-Evil: 1",
            "sip:a@b>\r\nVia: x",
            "sip:a@b.com>;x=<sip:c@d",
            "tel:+14155550199",
            "",
            "+",
            "123456789012345678901",
            "{{number}}",
            "http://example.com",
        ] {
            assert!(matches!(refer_to(hostile, peer), Err(TransferFailed::BadDestination(_))), "{hostile:?}");
        }
    }

    #[test]
    fn sipfrag_bodies_give_their_status() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here\r\n"), Some(486));
        assert_eq!(sipfrag_status(b"garbage"), None);
        assert_eq!(sipfrag_status(&[0xff, 0xfe]), None);
    }
}
