//! Client and server transactions (RFC 3261 §17, with RFC 6026's Accepted state), as pure
//! state machines. Inputs are messages and the current time; outputs are `Action`s the
//! endpoint performs. On reliable transports the retransmission timers are off.

use std::time::{Duration, Instant};

use crate::msg::{Headers, Method, Request, Response};

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);
/// How long a server transaction waits for its user's final response before answering 500
/// itself: a non-INVITE's client gives up at 64*T1 (Timer F); an INVITE may ring, so it gets
/// the three minutes a proxy's Timer C allows.
pub const NON_INVITE_ANSWER_LIMIT: Duration = Duration::from_secs(32);
pub const INVITE_ANSWER_LIMIT: Duration = Duration::from_secs(180);

/// What the endpoint should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put these bytes on the wire to the transaction's peer.
    Send(Vec<u8>),
    /// Hand this response to the transaction user.
    Deliver(Response),
    /// No final response arrived in time (Timer B or F).
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    Calling,
    Proceeding,
    Completed,
    /// An INVITE got a 2xx; further 2xx retransmissions still go to the user (RFC 6026).
    Accepted,
    Terminated,
}

/// A client transaction: one request we sent, until its final response is settled.
#[derive(Debug)]
pub struct ClientTransaction {
    request: Request,
    bytes: Vec<u8>,
    invite: bool,
    reliable: bool,
    state: ClientState,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    end_at: Option<Instant>,
    ack: Option<Vec<u8>>,
}

impl ClientTransaction {
    /// Starts the transaction; the first action sends the request.
    pub fn start(request: Request, reliable: bool, now: Instant) -> (Self, Vec<Action>) {
        let bytes = request.to_bytes();
        let invite = request.method == Method::Invite;
        let tx = Self {
            retransmit_at: (!reliable).then_some(now + T1),
            interval: T1,
            timeout_at: Some(now + 64 * T1),
            end_at: None,
            state: if invite { ClientState::Calling } else { ClientState::Proceeding },
            ack: None,
            bytes: bytes.clone(),
            request,
            invite,
            reliable,
        };
        (tx, vec![Action::Send(bytes)])
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// Whether the INVITE has had a provisional response (so CANCEL may be sent).
    pub fn has_provisional(&self) -> bool {
        self.state != ClientState::Calling
    }

    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at].into_iter().flatten().min()
    }

    pub fn on_response(&mut self, response: Response, now: Instant) -> Vec<Action> {
        let status = response.status;
        match (self.state, status) {
            (ClientState::Terminated, _) => vec![],
            (ClientState::Completed, 300..) => self.ack.clone().map(Action::Send).into_iter().collect(),
            (ClientState::Completed, _) => vec![],
            (ClientState::Accepted, 200..=299) => vec![Action::Deliver(response)],
            (ClientState::Accepted, _) => vec![],
            (_, 100..=199) => {
                if self.invite {
                    // Ringing may last minutes: Timer B only guards the Calling state, and
                    // the user cancels a call that rings too long.
                    self.state = ClientState::Proceeding;
                    self.retransmit_at = None;
                    self.timeout_at = None;
                } else if let Some(at) = self.retransmit_at.as_mut() {
                    // Non-INVITE: keep retransmitting, at T2.
                    self.interval = T2;
                    *at = now + T2;
                }
                vec![Action::Deliver(response)]
            }
            (_, 200..=299) if self.invite => {
                self.state = ClientState::Accepted;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(now + 64 * T1);
                vec![Action::Deliver(response)]
            }
            (_, _) => {
                self.state = ClientState::Completed;
                self.retransmit_at = None;
                self.timeout_at = None;
                let linger = if self.reliable {
                    Duration::ZERO
                } else if self.invite {
                    Duration::from_secs(32)
                } else {
                    T4
                };
                self.end_at = Some(now + linger);
                let mut actions = Vec::new();
                if self.invite {
                    let ack = ack_for_failure(&self.request, &response).to_bytes();
                    actions.push(Action::Send(ack.clone()));
                    self.ack = Some(ack);
                }
                actions.push(Action::Deliver(response));
                actions
            }
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.end_at.is_some_and(|at| now >= at) {
            self.state = ClientState::Terminated;
            self.end_at = None;
            return actions;
        }
        if self.timeout_at.is_some_and(|at| now >= at) {
            self.state = ClientState::Terminated;
            self.timeout_at = None;
            self.retransmit_at = None;
            actions.push(Action::Timeout);
            return actions;
        }
        if let Some(at) = self.retransmit_at
            && now >= at
        {
            actions.push(Action::Send(self.bytes.clone()));
            self.interval = if self.invite { self.interval * 2 } else { (self.interval * 2).min(T2) };
            self.retransmit_at = Some(now + self.interval);
        }
        actions
    }

    /// Gives up at once (the transport failed).
    pub fn terminate(&mut self) {
        self.state = ClientState::Terminated;
    }
}

/// The ACK for a non-2xx final response, which belongs to the INVITE transaction (§17.1.1.3).
fn ack_for_failure(invite: &Request, response: &Response) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.get_all("via").first() {
        headers.push("Via", *via);
    }
    for (name, value) in invite.headers.iter() {
        if ["route", "max-forwards", "from", "call-id"].iter().any(|n| n.eq_ignore_ascii_case(name)) {
            headers.push(name, value);
        }
    }
    headers.push("To", response.headers.get("to").unwrap_or_default());
    headers.push("CSeq", format!("{} ACK", invite.cseq().0));
    Request { method: Method::Ack, uri: invite.uri.clone(), headers, body: Vec::new() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    Proceeding,
    Completed,
    Confirmed,
    /// An INVITE answered 2xx: retransmitted until the ACK arrives (RFC 6026).
    Accepted,
    Terminated,
}

/// A server transaction: one request we received, until our final response is settled.
/// Every state has a timer that ends it, so a transaction whose user never answers cannot
/// outlive its answer limit (it answers 500 itself then).
#[derive(Debug)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    state: ServerState,
    last_response: Option<Vec<u8>>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    end_at: Option<Instant>,
    /// While no final response was sent: when we answer `abandon` ourselves.
    abandon_at: Option<Instant>,
    /// The 500 sent if the user never answers (built up front: the request is not kept).
    abandon: Option<Response>,
}

impl ServerTransaction {
    pub fn new(request: &Request, reliable: bool, now: Instant) -> Self {
        let invite = request.method == Method::Invite;
        let mut abandon = Response::to(request, 500, "Server Internal Error");
        if let Some(to) = abandon.headers.get("to").filter(|to| crate::msg::param(to, "tag").is_none()) {
            let tagged = format!("{to};tag={}", crate::endpoint::new_token());
            abandon.headers.set("To", tagged);
        }
        Self {
            invite,
            reliable,
            state: ServerState::Proceeding,
            last_response: None,
            retransmit_at: None,
            interval: T1,
            end_at: None,
            abandon_at: Some(now + if invite { INVITE_ANSWER_LIMIT } else { NON_INVITE_ANSWER_LIMIT }),
            abandon: Some(abandon),
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.end_at, self.abandon_at].into_iter().flatten().min()
    }

    /// Whether a final response was sent.
    pub fn is_answered(&self) -> bool {
        self.state != ServerState::Proceeding
    }

    /// The user responds.
    pub fn respond(&mut self, response: &Response, now: Instant) -> Vec<Action> {
        if matches!(self.state, ServerState::Terminated | ServerState::Confirmed) {
            return vec![];
        }
        if self.state != ServerState::Proceeding && response.status >= 200 {
            // One final response per transaction.
            return vec![];
        }
        let bytes = response.to_bytes();
        self.last_response = Some(bytes.clone());
        if response.status >= 200 {
            self.abandon_at = None;
            self.abandon = None;
        }
        match response.status {
            100..=199 => {}
            200..=299 if self.invite => {
                self.state = ServerState::Accepted;
                self.retransmit_at = (!self.reliable).then_some(now + T1);
                self.end_at = Some(now + 64 * T1);
            }
            _ if self.invite => {
                self.state = ServerState::Completed;
                self.retransmit_at = (!self.reliable).then_some(now + T1);
                self.end_at = Some(now + 64 * T1);
            }
            _ => {
                self.state = ServerState::Completed;
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { 64 * T1 });
            }
        }
        vec![Action::Send(bytes)]
    }

    /// The peer retransmitted the request: repeat our last response, if any.
    pub fn on_retransmission(&mut self) -> Vec<Action> {
        match self.state {
            ServerState::Proceeding | ServerState::Completed | ServerState::Accepted => {
                self.last_response.clone().map(Action::Send).into_iter().collect()
            }
            _ => vec![],
        }
    }

    /// The ACK for our final response arrived.
    pub fn on_ack(&mut self, now: Instant) {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.retransmit_at = None;
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { T4 });
            }
            ServerState::Accepted => {
                self.state = ServerState::Terminated;
                self.retransmit_at = None;
                self.end_at = None;
            }
            _ => {}
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if self.abandon_at.is_some_and(|at| now >= at)
            && let Some(abandon) = self.abandon.take()
        {
            return self.respond(&abandon, now);
        }
        if self.end_at.is_some_and(|at| now >= at) {
            self.state = ServerState::Terminated;
            self.retransmit_at = None;
            self.end_at = None;
            return vec![];
        }
        match self.retransmit_at {
            Some(at) if now >= at => {
                self.interval = (self.interval * 2).min(T2);
                self.retransmit_at = Some(now + self.interval);
                self.last_response.clone().map(Action::Send).into_iter().collect()
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Message, parse};

    fn request(method: &str) -> Request {
        let raw = format!(
            "{method} sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:1@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(raw.as_bytes(), false).unwrap().0 {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    fn response(req: &Request, status: u16) -> Response {
        let mut r = Response::to(req, status, "X");
        r.headers.set("To", "<sip:1@127.0.0.1>;tag=9");
        r
    }

    fn sends(actions: &[Action]) -> usize {
        actions.iter().filter(|a| matches!(a, Action::Send(_))).count()
    }

    #[test]
    fn an_unanswered_invite_is_retransmitted_with_doubling_intervals_then_times_out() {
        let t0 = Instant::now();
        let (mut tx, first) = ClientTransaction::start(request("INVITE"), false, t0);
        assert_eq!(sends(&first), 1);
        let mut at = t0;
        let mut n_retransmits = 0;
        let mut gaps = Vec::new();
        loop {
            let next = tx.deadline().unwrap();
            gaps.push(next - at);
            at = next;
            let actions = tx.on_timer(at);
            if actions.contains(&Action::Timeout) {
                break;
            }
            n_retransmits += sends(&actions);
        }
        assert_eq!(at - t0, 64 * T1, "Timer B fires at 64*T1");
        assert_eq!(n_retransmits, 6);
        assert_eq!(&gaps[..3], &[T1, 2 * T1, 4 * T1]);
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_transports_do_not_retransmit() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientTransaction::start(request("INVITE"), true, t0);
        assert_eq!(tx.deadline(), Some(t0 + 64 * T1));
        assert!(tx.on_timer(t0 + T1).is_empty());
    }

    #[test]
    fn a_failure_response_is_acked_within_the_transaction_and_absorbed_when_repeated() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientTransaction::start(req.clone(), false, t0);
        assert!(matches!(&tx.on_response(response(&req, 180), t0)[..], [Action::Deliver(_)]));
        assert!(tx.has_provisional());
        let actions = tx.on_response(response(&req, 486), t0);
        let Action::Send(ack) = &actions[0] else { panic!("ACK first") };
        let ack = String::from_utf8_lossy(ack);
        assert!(ack.starts_with("ACK sip:1@127.0.0.1 SIP/2.0") && ack.contains("CSeq: 1 ACK") && ack.contains("tag=9"), "{ack}");
        assert!(matches!(actions[1], Action::Deliver(ref r) if r.status == 486));
        // A retransmitted 486 gets the ACK again, and is not delivered twice.
        assert_eq!(tx.on_response(response(&req, 486), t0), vec![Action::Send(ack.as_bytes().to_vec())]);
        tx.on_timer(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn retransmitted_2xx_keep_reaching_the_user_while_accepted() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientTransaction::start(req.clone(), false, t0);
        assert_eq!(tx.on_response(response(&req, 200), t0).len(), 1);
        assert_eq!(tx.on_response(response(&req, 200), t0).len(), 1);
        tx.on_timer(t0 + 64 * T1);
        assert!(tx.is_terminated());
    }

    #[test]
    fn a_non_invite_retransmits_at_most_every_t2_until_answered() {
        let t0 = Instant::now();
        let req = request("BYE");
        let (mut tx, _) = ClientTransaction::start(req.clone(), false, t0);
        let mut at = t0;
        for _ in 0..5 {
            at = tx.deadline().unwrap();
            tx.on_timer(at);
        }
        assert_eq!(tx.deadline().unwrap() - at, T2);
        assert!(matches!(&tx.on_response(response(&req, 200), at)[..], [Action::Deliver(_)]));
        tx.on_timer(at + T4);
        assert!(tx.is_terminated());
    }

    #[test]
    fn a_server_transaction_whose_user_never_answers_answers_500_itself_and_ends() {
        let t0 = Instant::now();
        let req = request("OPTIONS");
        let mut tx = ServerTransaction::new(&req, false, t0);
        assert_eq!(tx.deadline(), Some(t0 + NON_INVITE_ANSWER_LIMIT));
        let actions = tx.on_timer(t0 + NON_INVITE_ANSWER_LIMIT);
        let [Action::Send(bytes)] = &actions[..] else { panic!("one 500: {actions:?}") };
        assert!(String::from_utf8_lossy(bytes).starts_with("SIP/2.0 500 "));
        assert!(tx.is_answered());
        let end = tx.deadline().unwrap();
        tx.on_timer(end);
        assert!(tx.is_terminated(), "the transaction ends once the 500 has lingered");
        assert!(tx.respond(&response(&req, 200), end).is_empty(), "a late answer is not sent");
    }

    #[test]
    fn an_unanswered_invite_transaction_gets_a_tagged_500_after_its_limit_and_ends_without_an_ack() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerTransaction::new(&req, false, t0);
        assert_eq!(sends(&tx.respond(&response(&req, 180), t0)), 1, "ringing does not stop the clock");
        assert_eq!(tx.deadline(), Some(t0 + INVITE_ANSWER_LIMIT));
        let actions = tx.on_timer(t0 + INVITE_ANSWER_LIMIT);
        let [Action::Send(bytes)] = &actions[..] else { panic!("one 500: {actions:?}") };
        let text = String::from_utf8_lossy(bytes);
        assert!(text.starts_with("SIP/2.0 500 ") && text.contains(";tag="), "{text}");
        let mut at = t0 + INVITE_ANSWER_LIMIT;
        while let Some(next) = tx.deadline() {
            at = next;
            tx.on_timer(at);
        }
        assert!(tx.is_terminated());
        assert!(at - (t0 + INVITE_ANSWER_LIMIT) <= 64 * T1, "Timer H ends it");
    }

    #[test]
    fn a_final_answer_in_time_cancels_the_answer_limit() {
        let t0 = Instant::now();
        let req = request("OPTIONS");
        let mut tx = ServerTransaction::new(&req, true, t0);
        tx.respond(&response(&req, 200), t0);
        assert_eq!(tx.deadline(), Some(t0), "reliable: ends at once");
        assert!(tx.on_timer(t0).is_empty());
        assert!(tx.is_terminated());
    }

    #[test]
    fn a_server_repeats_its_final_response_until_acked() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerTransaction::new(&req, false, t0);
        assert_eq!(sends(&tx.respond(&response(&req, 180), t0)), 1);
        assert_eq!(sends(&tx.on_retransmission()), 1, "a retransmitted INVITE gets the 180 again");
        assert_eq!(sends(&tx.respond(&response(&req, 200), t0)), 1);
        assert!(tx.respond(&response(&req, 500), t0).is_empty(), "only one final response");
        assert_eq!(sends(&tx.on_timer(t0 + T1)), 1);
        assert_eq!(tx.deadline(), Some(t0 + T1 + 2 * T1));
        tx.on_ack(t0 + T1);
        assert!(tx.is_terminated());
    }
}
