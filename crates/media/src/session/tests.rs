use super::*;
use crate::sdp::Codec;

fn params(remote: SocketAddr) -> MediaParams {
    MediaParams { remote, codec: Codec::Pcmu, payload_type: 0, dtmf_payload_type: Some(101) }
}

struct Ends {
    to_agent: mpsc::Receiver<CallerFrame>,
    from_agent: mpsc::Sender<AgentFrame>,
    gate: PlayoutGate,
    dtmf_out: mpsc::Sender<char>,
    events: mpsc::Receiver<MediaEvent>,
}

impl Ends {
    /// Forgets the caller frames queued so far, so the next ones are this moment's.
    fn drain(&mut self) {
        while self.to_agent.try_recv().is_ok() {}
    }

    /// Waits three ticks, so the session has read every packet sent so far.
    async fn settle(&mut self) {
        self.drain();
        for _ in 0..3 {
            self.to_agent.recv().await.unwrap();
        }
    }
}

fn channels() -> (MediaChannels, Ends) {
    let (to_agent_tx, to_agent) = mpsc::channel(100);
    let (from_agent, from_agent_rx) = mpsc::channel(100);
    let (dtmf_out, dtmf_out_rx) = mpsc::channel(10);
    let (events_tx, events) = mpsc::channel(10);
    let gate = PlayoutGate::new();
    (
        MediaChannels { to_agent: to_agent_tx, from_agent: from_agent_rx, gate: gate.clone(), dtmf_out: dtmf_out_rx, events: events_tx },
        Ends { to_agent, from_agent, gate, dtmf_out, events },
    )
}

#[tokio::test]
async fn two_sessions_carry_audio_and_dtmf_both_ways() {
    let ports = RtpPorts::new(30_000..=30_100);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let (a_socket, b_socket) = (ports.bind(ip).await.unwrap(), ports.bind(ip).await.unwrap());
    let (a_addr, b_addr) = (a_socket.local_addr().unwrap(), b_socket.local_addr().unwrap());
    assert_eq!(a_addr.port() % 2, 0);
    let config = SessionConfig { no_audio_timeout: Duration::from_secs(5), jitter_depth: 2, recording: None };
    let (a_channels, a) = channels();
    let (b_channels, mut b) = channels();
    let a_session = MediaSession::start(a_socket, params(b_addr), config.clone(), a_channels).unwrap();
    let b_session = MediaSession::start(b_socket, params(a_addr), config, b_channels).unwrap();

    for _ in 0..10 {
        a.from_agent.send(AgentFrame { generation: 0, samples: [1000; SAMPLES_PER_FRAME], last: false }).await.unwrap();
    }
    a.dtmf_out.send('5').await.unwrap();
    let mut loud = 0;
    for _ in 0..40 {
        let frame = b.to_agent.recv().await.unwrap().samples;
        if frame[0] > 900 {
            loud += 1;
        }
    }
    assert!(loud >= 8, "B heard A's audio ({loud} loud frames)");
    let digit = loop {
        match tokio::time::timeout(Duration::from_secs(2), b.events.recv()).await.unwrap() {
            Some(MediaEvent::Playout(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(digit, Some(MediaEvent::Dtmf('5')));
    let stats = a_session.stop().await;
    assert!(stats.n_sent >= 40 && stats.n_received >= 30, "{stats:?}");
    b_session.stop().await;
}

/// A socket playing a peer: sends PCMU packets of one constant value.
struct Peer {
    socket: std::sync::Arc<UdpSocket>,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl Peer {
    async fn on(ip: &str, ssrc: u32, timestamp: u32) -> Self {
        let socket = std::sync::Arc::new(UdpSocket::bind((ip, 0)).await.unwrap());
        Self { socket, ssrc, sequence: 0, timestamp }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    async fn send_to(&mut self, to: SocketAddr, payload_type: u8, payload: &[u8]) {
        let packet = Packet { marker: false, payload_type, sequence: self.sequence, timestamp: self.timestamp, ssrc: self.ssrc, payload };
        let mut buf = Vec::new();
        packet.write(&mut buf);
        self.socket.send_to(&buf, to).await.unwrap();
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_FRAME as u32);
    }

    async fn audio(&mut self, to: SocketAddr, value: i16) {
        self.send_to(to, 0, &[Codec::Pcmu.encode(value); SAMPLES_PER_FRAME]).await;
    }

    /// How many packets reached this peer so far.
    fn n_received(&self) -> usize {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while self.socket.try_recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}

/// Classifies caller frames heard by the agent side: (near `a`, near `b`).
fn tally(frames: &[Frame], a: i16, b: i16) -> (usize, usize) {
    let near = |frame: &Frame, v: i16| frame.iter().all(|s| (i32::from(*s) - i32::from(v)).abs() < i32::from(v) / 10);
    (frames.iter().filter(|f| near(f, a)).count(), frames.iter().filter(|f| near(f, b)).count())
}

async fn session_for(remote: SocketAddr, policy: RtpPolicy) -> (MediaSession, Ends) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = SessionConfig { no_audio_timeout: Duration::from_secs(30), jitter_depth: 2, recording: None };
    let (channels, ends) = channels();
    (MediaSession::start_with(socket, params(remote), config, channels, policy).unwrap(), ends)
}

#[tokio::test]
async fn packets_from_another_port_are_dropped_counted_and_never_answered() {
    let mut peer = Peer::on("127.0.0.1", 1, 0).await;
    let mut intruder = Peer::on("127.0.0.1", 2, 0).await;
    let (session, mut ends) = session_for(peer.addr(), RtpPolicy::default()).await;
    let to = session.local_addr();
    let mut frames = Vec::new();
    for i in 0..30 {
        peer.audio(to, 1000).await;
        intruder.audio(to, 8000).await;
        if i % 6 == 0 {
            // A digit (RFC 4733, end bit set) is no more welcome than audio.
            intruder.send_to(to, 101, &[5, 0x8A, 0, 160]).await;
        }
        frames.push(ends.to_agent.recv().await.unwrap().samples);
    }
    ends.settle().await;
    let stats = session.stop().await;

    assert_eq!((stats.n_rejected_source, stats.n_rejected_ssrc, stats.latched_to), (35, 0, None), "{stats:?}");
    let (heard_peer, heard_intruder) = tally(&frames, 1000, 8000);
    assert!(heard_peer >= 20 && heard_intruder == 0, "peer {heard_peer}, intruder {heard_intruder} frames");
    assert!(ends.events.try_recv().is_err(), "no digit from the intruder");
    assert!(peer.n_received() >= 25, "our audio goes to the SDP's address");
    assert_eq!(intruder.n_received(), 0, "and never to the intruder");
}

#[tokio::test]
async fn a_peer_behind_nat_is_latched_within_the_window_from_the_sdp_ip_only() {
    // The SDP names a port the peer never sends from (its NAT maps another one).
    let sdp_port = Peer::on("127.0.0.1", 0, 0).await;
    let mut other_ip = Peer::on("127.0.0.2", 3, 0).await;
    let mut natted = Peer::on("127.0.0.1", 1, 0).await;
    let mut late = Peer::on("127.0.0.1", 2, 0).await;
    let (session, mut ends) = session_for(sdp_port.addr(), RtpPolicy::default()).await;
    let to = session.local_addr();
    let mut frames = Vec::new();
    for _ in 0..5 {
        other_ip.audio(to, 8000).await;
        frames.push(ends.to_agent.recv().await.unwrap().samples);
    }
    let before_latch = sdp_port.n_received();
    for _ in 0..30 {
        natted.audio(to, 1000).await;
        late.audio(to, 8000).await;
        frames.push(ends.to_agent.recv().await.unwrap().samples);
    }
    ends.settle().await;
    let stats = session.stop().await;

    assert_eq!(stats.latched_to, Some(natted.addr()), "{stats:?}");
    assert_eq!(stats.n_rejected_source, 35, "another IP, then a second port: {stats:?}");
    let (heard_natted, heard_others) = tally(&frames, 1000, 8000);
    assert!(heard_natted >= 20 && heard_others == 0, "natted {heard_natted}, others {heard_others} frames");
    assert!(before_latch >= 3, "our audio went to the SDP's address until the latch");
    assert!(natted.n_received() >= 25, "and then to where the peer sends from");
    assert_eq!((other_ip.n_received(), late.n_received()), (0, 0));
}

#[tokio::test]
async fn no_latch_is_made_after_the_window_but_the_sdp_address_is_still_heard() {
    let policy = RtpPolicy { latch_window: Duration::from_millis(200), ..RtpPolicy::default() };
    let mut peer = Peer::on("127.0.0.1", 1, 0).await;
    let mut natted = Peer::on("127.0.0.1", 2, 0).await;
    let (session, mut ends) = session_for(peer.addr(), policy).await;
    let to = session.local_addr();
    // Waiting out the window is what is being tested.
    tokio::time::sleep(Duration::from_millis(400)).await;
    ends.drain();
    let mut frames = Vec::new();
    for _ in 0..10 {
        natted.audio(to, 8000).await;
        frames.push(ends.to_agent.recv().await.unwrap().samples);
    }
    for _ in 0..20 {
        peer.audio(to, 1000).await;
        natted.audio(to, 8000).await;
        frames.push(ends.to_agent.recv().await.unwrap().samples);
    }
    ends.settle().await;
    let stats = session.stop().await;

    assert_eq!((stats.n_rejected_source, stats.latched_to), (30, None), "{stats:?}");
    let (heard_peer, heard_natted) = tally(&frames, 1000, 8000);
    assert!(heard_peer >= 12 && heard_natted == 0, "peer {heard_peer}, natted {heard_natted} frames");
    assert_eq!(natted.n_received(), 0);
}

#[tokio::test]
async fn a_new_ssrc_is_taken_only_after_the_old_one_falls_silent() {
    let policy = RtpPolicy { ssrc_restart_silence: Duration::from_secs(1), ..RtpPolicy::default() };
    let mut first = Peer::on("127.0.0.1", 0x1111, 0).await;
    let (session, mut ends) = session_for(first.addr(), policy).await;
    let to = session.local_addr();
    // The second stream comes from the same socket (same source), with its own SSRC and
    // a timestamp half the space away, which only a re-based jitter buffer can play.
    let mut second = Peer { socket: first.socket.clone(), ssrc: 0x2222, sequence: 0, timestamp: 0x8000_0000 };
    let mut frames = Vec::new();
    for _ in 0..20 {
        first.audio(to, 1000).await;
        second.audio(to, 8000).await;
        frames.push(ends.to_agent.recv().await.unwrap().samples);
    }
    let (heard_first, heard_second) = tally(&frames, 1000, 8000);
    assert!(heard_first >= 12 && heard_second == 0, "first {heard_first}, second {heard_second} frames while both send");
    // The first stream stops; after its silence the second takes over.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    ends.drain();
    let mut frames = Vec::new();
    for _ in 0..20 {
        second.audio(to, 8000).await;
        frames.push(ends.to_agent.recv().await.unwrap().samples);
    }
    ends.settle().await;
    let stats = session.stop().await;

    assert_eq!((stats.n_rejected_ssrc, stats.n_ssrc_restarts, stats.n_rejected_source), (20, 1, 0), "{stats:?}");
    let (_, heard_second) = tally(&frames, 1000, 8000);
    assert!(heard_second >= 12, "the restarted stream is played: {heard_second} frames");
}

#[tokio::test]
async fn ports_are_picked_at_random_not_in_turn() {
    let ports = RtpPorts::new(30_400..=31_399);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(ports.bind(ip).await.unwrap());
    }
    let picked: Vec<u16> = held.iter().map(|s| s.local_addr().unwrap().port()).collect();
    assert!(picked.iter().all(|p| p.is_multiple_of(2) && (30_400..=31_398).contains(p)), "{picked:?}");
    assert!(picked.windows(2).any(|w| w[1] != w[0] + 2), "not one after the other: {picked:?}");
    let mut distinct = picked.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), picked.len());
}

#[tokio::test]
async fn every_port_is_tried_before_giving_up() {
    // Three even ports in a row, held here so no one else takes them meanwhile.
    let (first, mut held) = loop {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if !port.is_multiple_of(2) || port > 65_000 {
            continue;
        }
        let rest: Vec<_> = [2, 4].iter().filter_map(|d| std::net::UdpSocket::bind(("127.0.0.1", port + d)).ok()).collect();
        if rest.len() == 2 {
            let mut all = vec![socket];
            all.extend(rest);
            break (port, all);
        }
    };
    let ports = RtpPorts::new(first..=first + 4);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let free = held.remove(1);
    drop(free);
    for _ in 0..10 {
        let socket = ports.bind(ip).await.expect("the one free port is found");
        assert_eq!(socket.local_addr().unwrap().port(), first + 2);
    }
    held.push(std::net::UdpSocket::bind(("127.0.0.1", first + 2)).unwrap());
    let err = ports.bind(ip).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn silence_from_the_peer_is_reported_once() {
    let ports = RtpPorts::new(30_200..=30_300);
    let socket = ports.bind("127.0.0.1".parse().unwrap()).await.unwrap();
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = SessionConfig { no_audio_timeout: Duration::from_millis(200), jitter_depth: 2, recording: None };
    let (channels, mut ends) = channels();
    let session = MediaSession::start(socket, params(nowhere), config, channels).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(2), ends.events.recv()).await.unwrap();
    assert_eq!(event, Some(MediaEvent::NoAudio));
    assert!(tokio::time::timeout(Duration::from_millis(300), ends.events.recv()).await.is_err());
    session.stop().await;
}

/// A barge-in at the wire: after the gate rises, the peer receives no more of the cancelled
/// response (within a tick), the session reports how much of it went out, and the frames
/// still queued are counted as dropped.
#[tokio::test]
async fn a_cancelled_response_stops_at_the_wire_within_a_tick_and_reports_what_was_played() {
    let ports = RtpPorts::new(30_102..=30_200);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let socket = ports.bind(ip).await.unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = SessionConfig { no_audio_timeout: Duration::from_secs(5), jitter_depth: 2, recording: None };
    let (channels, mut ends) = channels();
    let session = MediaSession::start(socket, params(peer.local_addr().unwrap()), config, channels).unwrap();
    // Two seconds of a loud response, queued at once (the channel holds 100 frames).
    for _ in 0..100 {
        ends.from_agent.send(AgentFrame { generation: 1, samples: [8000; SAMPLES_PER_FRAME], last: false }).await.unwrap();
    }
    let started = loop {
        match ends.events.recv().await.unwrap() {
            MediaEvent::Playout(PlayoutEvent::Started { generation: 1, at }) => break at,
            _ => continue,
        }
    };
    // Let ten frames out, then cancel.
    let mut buf = [0u8; 2048];
    let mut loud = 0;
    while loud < 10 {
        let (len, _) = peer.recv_from(&mut buf).await.unwrap();
        let packet = Packet::parse(&buf[..len]).unwrap();
        if Codec::Pcmu.decode(packet.payload[0]) > 4000 {
            loud += 1;
        }
    }
    ends.gate.cancel_through(1);
    let report = loop {
        match ends.events.recv().await.unwrap() {
            MediaEvent::Playout(PlayoutEvent::Ended(report)) => break report,
            _ => continue,
        }
    };
    assert!(report.cancelled && report.generation == 1);
    assert_eq!(report.first_at, started);
    // At most one more loud packet can have been in flight when the gate rose.
    let mut after = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, peer.recv_from(&mut buf)).await {
        let packet = Packet::parse(&buf[..len]).unwrap();
        if Codec::Pcmu.decode(packet.payload[0]) > 4000 {
            after += 1;
        }
    }
    assert!(after <= 1, "{after} loud packets after the cancel");
    assert!((10..=12).contains(&report.frames), "{report:?}");
    let stats = session.stop().await;
    assert_eq!(stats.n_agent_frames_dropped, 100 - u64::from(report.frames));
}

/// A busy runtime makes ticks late, and the missed ones then come in a burst. The packets
/// that arrived meanwhile wait in the socket: the late ticks must play them, not silence
/// ahead of them (which would shift the rest of the call and count no loss).
#[tokio::test(flavor = "current_thread")]
async fn late_ticks_play_the_packets_that_arrived_meanwhile_not_silence() {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (session, mut ends) = session_for(peer.local_addr().unwrap(), RtpPolicy::default()).await;
    let to = session.local_addr();
    let mut sequence = 0u16;
    let mut send = |n: u16| {
        for _ in 0..n {
            let timestamp = u32::from(sequence) * SAMPLES_PER_FRAME as u32;
            let payload = [Codec::Pcmu.encode(4000); SAMPLES_PER_FRAME];
            let packet = Packet { marker: false, payload_type: 0, sequence, timestamp, ssrc: 7, payload: &payload };
            let mut buf = Vec::new();
            packet.write(&mut buf);
            peer.send_to(&buf, to).unwrap();
            sequence += 1;
        }
    };
    send(10);
    let mut frames = Vec::new();
    while frames.iter().filter(|f: &&CallerFrame| !f.concealed).count() < 3 {
        frames.push(ends.to_agent.recv().await.unwrap());
    }
    // The runtime's thread is busy for 300 ms (15 ticks, more than the 7 frames buffered);
    // the peer's next packets reach the socket before the session runs again.
    std::thread::sleep(Duration::from_millis(300));
    send(20);
    while frames.iter().filter(|f| !f.concealed).count() < 30 {
        let frame = tokio::time::timeout(Duration::from_secs(2), ends.to_agent.recv()).await.expect("all 30 frames play").unwrap();
        frames.push(frame);
    }
    let first = frames.iter().position(|f| !f.concealed).unwrap();
    let gaps = frames[first..].iter().filter(|f| f.concealed).count();
    assert_eq!(gaps, 0, "no silence between the stream's frames");
    let stats = session.stop().await;
    assert_eq!((stats.n_received, stats.n_lost), (30, 0), "{stats:?}");
}
