//! A dialog: what an established call needs to send ACK and BYE and to recognise the
//! peer's in-dialog requests (RFC 3261 §12).

use crate::msg::{Headers, Method, Request, Response};
use crate::uri::{NameAddr, SipUri};

#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    /// Our From (UAC) or To (UAS), with our tag.
    pub local: String,
    /// The peer's address with its tag.
    pub remote: String,
    pub remote_tag: String,
    /// Our tag (in `local`).
    pub local_tag: String,
    /// Where in-dialog requests go: the peer's Contact.
    pub remote_target: SipUri,
    /// Route headers for in-dialog requests, in order.
    pub route_set: Vec<String>,
    /// The CSeq of the INVITE that made the dialog (its ACK reuses it).
    pub invite_cseq: u32,
    local_cseq: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DialogError {
    #[error("missing or malformed {0}")]
    Missing(&'static str),
}

impl Dialog {
    /// The dialog our INVITE established when `ok` (a 2xx) arrived.
    pub fn from_uac(invite: &Request, ok: &Response) -> Result<Self, DialogError> {
        let to = ok.headers.get("to").ok_or(DialogError::Missing("To"))?;
        let remote_tag = NameAddr::parse(to).ok().and_then(|n| n.tag().map(str::to_owned)).ok_or(DialogError::Missing("To tag"))?;
        let contact = ok.headers.get("contact").ok_or(DialogError::Missing("Contact"))?;
        let remote_target = NameAddr::parse(contact).map_err(|_| DialogError::Missing("Contact"))?.uri;
        let mut route_set: Vec<String> = ok.headers.get_all("record-route").into_iter().map(str::to_owned).collect();
        route_set.reverse();
        let (cseq, _) = invite.cseq();
        let from = invite.headers.get("from").unwrap_or_default();
        let local_tag = NameAddr::parse(from).ok().and_then(|n| n.tag().map(str::to_owned)).ok_or(DialogError::Missing("From tag"))?;
        Ok(Self {
            call_id: invite.call_id().to_owned(),
            local: from.to_owned(),
            remote: to.to_owned(),
            remote_tag,
            local_tag,
            remote_target,
            route_set,
            invite_cseq: cseq,
            local_cseq: cseq,
        })
    }

    /// The dialog we establish by answering `invite` with `local_tag`.
    pub fn from_uas(invite: &Request, local_tag: &str) -> Result<Self, DialogError> {
        let from = invite.headers.get("from").ok_or(DialogError::Missing("From"))?;
        let remote_tag = NameAddr::parse(from).ok().and_then(|n| n.tag().map(str::to_owned)).ok_or(DialogError::Missing("From tag"))?;
        let contact = invite.headers.get("contact").ok_or(DialogError::Missing("Contact"))?;
        let remote_target = NameAddr::parse(contact).map_err(|_| DialogError::Missing("Contact"))?.uri;
        let to = invite.headers.get("to").ok_or(DialogError::Missing("To"))?;
        Ok(Self {
            call_id: invite.call_id().to_owned(),
            local: format!("{to};tag={local_tag}"),
            remote: from.to_owned(),
            remote_tag,
            local_tag: local_tag.to_owned(),
            remote_target,
            route_set: invite.headers.get_all("record-route").into_iter().map(str::to_owned).collect(),
            invite_cseq: invite.cseq().0,
            local_cseq: 0,
        })
    }

    /// The ACK for the 2xx (a new transaction, same CSeq number as the INVITE).
    pub fn ack(&self, via: String) -> Request {
        self.build(Method::Ack, via, self.invite_cseq)
    }

    /// A new in-dialog request (BYE, …) with the next CSeq.
    pub fn request(&mut self, method: Method, via: String) -> Request {
        self.local_cseq += 1;
        self.build(method, via, self.local_cseq)
    }

    /// Whether the peer's `request` belongs to this dialog (RFC 3261 §12.2.2): its Call-ID,
    /// the peer's tag in From and ours in To.
    pub fn matches(&self, request: &Request) -> bool {
        let tag_of =
            |name: &str| request.headers.get(name).and_then(|value| NameAddr::parse(value).ok()).and_then(|n| n.tag().map(str::to_owned));
        request.call_id() == self.call_id
            && tag_of("from").as_deref() == Some(self.remote_tag.as_str())
            && tag_of("to").as_deref() == Some(self.local_tag.as_str())
    }

    fn build(&self, method: Method, via: String, cseq: u32) -> Request {
        let mut headers = Headers::new();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        for route in &self.route_set {
            headers.push("Route", route.clone());
        }
        headers.push("From", self.local.clone());
        headers.push("To", self.remote.clone());
        headers.push("Call-ID", self.call_id.clone());
        headers.push("CSeq", format!("{cseq} {method}"));
        Request { method, uri: self.remote_target.to_string(), headers, body: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Message, parse};

    #[test]
    fn a_uac_dialog_targets_the_contact_and_counts_cseq_on() {
        let raw = "INVITE sip:1@trunk SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=ours\r\n\
To: <sip:1@trunk>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContact: <sip:a@h>\r\nContent-Length: 0\r\n\r\n";
        let Message::Request(invite) = parse(raw.as_bytes(), false).unwrap().0 else { panic!() };
        let mut ok = Response::to(&invite, 200, "OK");
        ok.headers.set("To", "<sip:1@trunk>;tag=theirs");
        ok.headers.push("Contact", "<sip:callee@10.1.1.1:5070>");
        ok.headers.push("Record-Route", "<sip:p1;lr>, <sip:p2;lr>");
        let mut dialog = Dialog::from_uac(&invite, &ok).unwrap();
        let ack = dialog.ack("SIP/2.0/UDP h;branch=z9hG4bK2".into());
        assert_eq!(ack.uri, "sip:callee@10.1.1.1:5070");
        assert_eq!(ack.cseq(), (7, Method::Ack));
        assert_eq!(ack.headers.get_all("route"), vec!["<sip:p2;lr>", "<sip:p1;lr>"]);
        let bye = dialog.request(Method::Bye, "SIP/2.0/UDP h;branch=z9hG4bK3".into());
        assert_eq!(bye.cseq(), (8, Method::Bye));
        assert!(bye.headers.get("to").unwrap().contains("tag=theirs"));
    }

    #[test]
    fn a_peer_request_matches_only_with_the_call_id_and_both_tags() {
        let raw = "INVITE sip:1@us SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=theirs\r\n\
To: <sip:1@us>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@h>\r\nContent-Length: 0\r\n\r\n";
        let Message::Request(invite) = parse(raw.as_bytes(), false).unwrap().0 else { panic!() };
        let dialog = Dialog::from_uas(&invite, "ours").unwrap();
        let bye = |from_tag: &str, to_tag: &str, call_id: &str| {
            let raw = format!(
                "BYE sip:1@us SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nFrom: <sip:a@h>;tag={from_tag}\r\n\
To: <sip:1@us>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
            );
            let Message::Request(bye) = parse(raw.as_bytes(), false).unwrap().0 else { panic!() };
            bye
        };
        assert!(dialog.matches(&bye("theirs", "ours", "c1")));
        assert!(!dialog.matches(&bye("theirs", "other", "c1")), "our tag is wrong");
        assert!(!dialog.matches(&bye("other", "ours", "c1")), "their tag is wrong");
        assert!(!dialog.matches(&bye("theirs", "ours", "c2")), "another call");
    }
}
