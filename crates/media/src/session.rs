//! One task per call's media: every 20 ms it plays one caller frame out of the jitter buffer
//! to the agent side, sends one agent frame (or silence) as RTP, and records both.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dtmf::{self, DtmfReceiver};
use crate::jitter::JitterBuffer;
use crate::rtp::Packet;
use crate::sdp::MediaParams;
use crate::wav::WavWriter;
use crate::{Frame, SAMPLE_RATE, SAMPLES_PER_FRAME, SILENCE};

const FRAME_INTERVAL: Duration = Duration::from_millis(20);
/// The longest audio packet accepted (120 ms); G.711 is one byte per sample.
const MAX_PACKET_SAMPLES: usize = 960;

/// The local RTP port range, even ports only. Each bind tries the ports in a random order (a
/// random start and a random stride coprime with the number of ports), so a port cannot be
/// guessed from the last call's, and every port is still tried once before giving up.
#[derive(Debug)]
pub struct RtpPorts {
    /// The first even port of the range.
    first: u16,
    n_ports: u32,
}

impl RtpPorts {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let first = range.start().saturating_add(*range.start() & 1);
        let n_ports = if first > *range.end() { 0 } else { (u32::from(*range.end()) - u32::from(first)) / 2 + 1 };
        Self { first, n_ports }
    }

    /// Binds a free even port of the range on `ip`.
    pub async fn bind(&self, ip: IpAddr) -> std::io::Result<UdpSocket> {
        let n = self.n_ports;
        if n > 0 {
            let start = rand::random_range(0..n);
            let stride = loop {
                let stride = rand::random_range(1..n.max(2));
                if gcd(stride, n) == 1 {
                    break stride;
                }
            };
            for k in 0..n {
                let index = (u64::from(start) + u64::from(k) * u64::from(stride)) % u64::from(n);
                let port = u32::from(self.first) + 2 * u32::try_from(index).unwrap_or(0);
                let Ok(port) = u16::try_from(port) else { continue };
                if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
                    return Ok(socket);
                }
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free RTP port in the range"))
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Which packets a session takes, and the rules that can change it.
///
/// A packet is taken only from the accepted source: the address the SDP named, or, for a
/// peer behind NAT, the first source that sends, if it has the SDP's IP (any port) and
/// sends within `latch_window` of the session's start, before the SDP's address has. After
/// the first taken packet the source is fixed for the call, and our audio goes to it.
///
/// Within that source one SSRC is taken at a time. A packet of another SSRC is the stream
/// restarting (new SSRC after a re-INVITE, a media server switching streams) only once the
/// current SSRC has sent nothing for `ssrc_restart_silence`; then the jitter buffer and DTMF
/// state start over for it. Until then it is dropped. Every dropped packet is counted.
#[derive(Clone, Copy, Debug)]
struct RtpPolicy {
    latch_window: Duration,
    ssrc_restart_silence: Duration,
}

impl Default for RtpPolicy {
    fn default() -> Self {
        Self { latch_window: Duration::from_secs(3), ssrc_restart_silence: Duration::from_millis(250) }
    }
}

/// What `RtpPolicy` decided about one packet.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Take,
    /// Take it: the first packet, from a new port of the SDP's IP; answer there from now on.
    Latch,
    /// Take it, after starting the stream over for its new SSRC.
    Restart,
    RejectSource,
    RejectSsrc,
}

/// The sans-I/O filter applying `RtpPolicy`.
#[derive(Debug)]
struct SourceFilter {
    policy: RtpPolicy,
    started: Instant,
    /// Where the SDP said the peer is.
    expected: SocketAddr,
    /// The source fixed by the first taken packet.
    source: Option<SocketAddr>,
    /// The SSRC taken and when it last sent.
    ssrc: Option<(u32, Instant)>,
}

impl SourceFilter {
    fn new(policy: RtpPolicy, expected: SocketAddr, started: Instant) -> Self {
        Self { policy, started, expected, source: None, ssrc: None }
    }

    fn judge(&mut self, from: SocketAddr, ssrc: u32, now: Instant) -> Verdict {
        let mut verdict = Verdict::Take;
        match self.source {
            Some(source) if source == from => {}
            Some(_) => return Verdict::RejectSource,
            None if from == self.expected => self.source = Some(from),
            None if from.ip() == self.expected.ip() && now.duration_since(self.started) < self.policy.latch_window => {
                self.source = Some(from);
                verdict = Verdict::Latch;
            }
            None => return Verdict::RejectSource,
        }
        match self.ssrc {
            Some((current, _)) if current == ssrc => {}
            Some((_, last)) if now.duration_since(last) < self.policy.ssrc_restart_silence => return Verdict::RejectSsrc,
            Some(_) => verdict = Verdict::Restart,
            None => {}
        }
        self.ssrc = Some((ssrc, now));
        verdict
    }
}

/// What the media task reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// A DTMF digit from the caller (RFC 4733).
    Dtmf(char),
    /// No RTP from the peer for the configured time (reported once).
    NoAudio,
}

/// Where to record, if at all.
#[derive(Clone, Debug)]
pub struct Recording {
    /// Stereo: left the caller (remote party), right the agent.
    pub stereo: PathBuf,
    /// Mono mix of both.
    pub mono: PathBuf,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub no_audio_timeout: Duration,
    /// Jitter buffer depth in 20 ms frames.
    pub jitter_depth: usize,
    pub recording: Option<Recording>,
}

/// Counters of a finished session.
#[derive(Clone, Debug, Default)]
pub struct MediaStats {
    pub n_sent: u64,
    pub n_received: u64,
    pub n_lost: u64,
    /// Packets dropped for coming from anywhere but the call's accepted source.
    pub n_rejected_source: u64,
    /// Packets dropped from the accepted source for carrying another SSRC than the stream's.
    pub n_rejected_ssrc: u64,
    /// Times the stream restarted with a new SSRC.
    pub n_ssrc_restarts: u64,
    /// Where the peer's media was latched to, if not where the SDP said.
    pub latched_to: Option<SocketAddr>,
    /// Histogram of |send interval − 20 ms| in 100 µs buckets (the last bucket is ≥ 20 ms).
    pub send_jitter_histogram: Vec<u64>,
}

impl MediaStats {
    /// The `q` quantile (0–1) of send jitter, in microseconds.
    pub fn send_jitter_quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.send_jitter_histogram.iter().sum();
        if total == 0 {
            return 0;
        }
        let wanted = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (bucket, n) in self.send_jitter_histogram.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return (bucket as u64 + 1) * 100;
            }
        }
        self.send_jitter_histogram.len() as u64 * 100
    }
}

/// The channels through which the rest of the call reaches its audio.
pub struct MediaChannels {
    /// Caller audio, one frame per 20 ms (dropped if the receiver lags).
    pub to_agent: mpsc::Sender<Frame>,
    /// Agent audio to send; silence when empty. Bounded, so a producer is paced by it.
    pub from_agent: mpsc::Receiver<Frame>,
    /// Digits to send as RFC 4733 events.
    pub dtmf_out: mpsc::Receiver<char>,
    pub events: mpsc::Sender<MediaEvent>,
}

/// A running media task.
pub struct MediaSession {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<MediaStats>,
    local: SocketAddr,
}

impl MediaSession {
    pub fn start(socket: UdpSocket, params: MediaParams, config: SessionConfig, channels: MediaChannels) -> std::io::Result<Self> {
        Self::start_with(socket, params, config, channels, RtpPolicy::default())
    }

    fn start_with(
        socket: UdpSocket,
        params: MediaParams,
        config: SessionConfig,
        channels: MediaChannels,
        policy: RtpPolicy,
    ) -> std::io::Result<Self> {
        let local = socket.local_addr()?;
        let recorder = match &config.recording {
            Some(recording) => Some(Recorder {
                stereo: WavWriter::create(&recording.stereo, 2, SAMPLE_RATE)?,
                mono: WavWriter::create(&recording.mono, 1, SAMPLE_RATE)?,
            }),
            None => None,
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(socket, params, config, policy, channels, recorder, cancel.clone()));
        Ok(Self { cancel, task, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the task, closes the recordings and returns the counters.
    pub async fn stop(self) -> MediaStats {
        self.cancel.cancel();
        self.task.await.unwrap_or_default()
    }
}

struct Recorder {
    stereo: WavWriter,
    mono: WavWriter,
}

impl Recorder {
    fn write(&mut self, caller: &Frame, agent: &Frame) -> std::io::Result<()> {
        let mut stereo = [0i16; SAMPLES_PER_FRAME * 2];
        let mut mono = [0i16; SAMPLES_PER_FRAME];
        for i in 0..SAMPLES_PER_FRAME {
            stereo[2 * i] = caller[i];
            stereo[2 * i + 1] = agent[i];
            mono[i] = caller[i].saturating_add(agent[i]);
        }
        self.stereo.write(&stereo)?;
        self.mono.write(&mono)
    }
}

struct Sender {
    params: MediaParams,
    remote: SocketAddr,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    buf: Vec<u8>,
    /// RFC 4733 payloads still to send for the digit in progress, with its timestamp.
    dtmf: Vec<[u8; 4]>,
    dtmf_timestamp: u32,
}

impl Sender {
    async fn send(&mut self, socket: &UdpSocket, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) {
        let packet = Packet { marker, payload_type, sequence: self.sequence, timestamp, ssrc: self.ssrc, payload };
        packet.write(&mut self.buf);
        self.sequence = self.sequence.wrapping_add(1);
        // A failed send (peer gone) is noticed through the call's other timeouts.
        let _ = socket.send_to(&self.buf, self.remote).await;
    }
}

async fn run(
    socket: UdpSocket,
    params: MediaParams,
    config: SessionConfig,
    policy: RtpPolicy,
    mut channels: MediaChannels,
    mut recorder: Option<Recorder>,
    cancel: CancellationToken,
) -> MediaStats {
    let mut jitter = JitterBuffer::new(config.jitter_depth);
    let mut dtmf_in = DtmfReceiver::default();
    let mut sender = Sender {
        remote: params.remote,
        params,
        sequence: rand::random(),
        timestamp: rand::random(),
        ssrc: rand::random(),
        buf: Vec::with_capacity(200),
        dtmf: Vec::new(),
        dtmf_timestamp: 0,
    };
    let mut stats = MediaStats { send_jitter_histogram: vec![0; 201], ..MediaStats::default() };
    let mut ticker = tokio::time::interval(FRAME_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut recv_buf = vec![0u8; 2048];
    let started = Instant::now();
    let mut last_rx = started;
    let mut no_audio_reported = false;
    let mut last_send: Option<Instant> = None;
    let mut filter = SourceFilter::new(policy, sender.remote, started);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {
                let now = Instant::now();
                if let Some(previous) = last_send {
                    let deviation = now.duration_since(previous).as_micros().abs_diff(FRAME_INTERVAL.as_micros());
                    let bucket = usize::try_from(deviation / 100).unwrap_or(usize::MAX).min(200);
                    stats.send_jitter_histogram[bucket] += 1;
                }
                last_send = Some(now);

                let caller = jitter.pop();
                let _ = channels.to_agent.try_send(caller);
                let agent = send_tick(&socket, &mut sender, &mut channels.dtmf_out, &mut channels.from_agent).await;
                stats.n_sent += 1;
                if let Some(rec) = recorder.as_mut()
                    && let Err(err) = rec.write(&caller, &agent) {
                        tracing::warn!(error = %err, "recording failed; continuing without it");
                        recorder = None;
                    }
                if !no_audio_reported && now.duration_since(last_rx) >= config.no_audio_timeout {
                    no_audio_reported = true;
                    let _ = channels.events.try_send(MediaEvent::NoAudio);
                }
            }
            received = socket.recv_from(&mut recv_buf) => {
                let Ok((len, source)) = received else { continue };
                let Ok(packet) = Packet::parse(&recv_buf[..len]) else { continue };
                let now = Instant::now();
                match filter.judge(source, packet.ssrc, now) {
                    Verdict::Take => {}
                    Verdict::Latch => {
                        // Symmetric RTP: answer where the peer really sends from (NAT).
                        tracing::info!(sdp = %sender.remote, %source, "rtp.latched");
                        sender.remote = source;
                        stats.latched_to = Some(source);
                    }
                    Verdict::Restart => {
                        tracing::info!(ssrc = packet.ssrc, "rtp.ssrc_restart");
                        jitter.restart();
                        dtmf_in = DtmfReceiver::default();
                        stats.n_ssrc_restarts += 1;
                    }
                    Verdict::RejectSource => {
                        stats.n_rejected_source += 1;
                        continue;
                    }
                    Verdict::RejectSsrc => {
                        stats.n_rejected_ssrc += 1;
                        continue;
                    }
                }
                last_rx = now;
                if Some(packet.payload_type) == sender.params.dtmf_payload_type {
                    if let Some(digit) = dtmf_in.on_payload(packet.timestamp, packet.payload) {
                        let _ = channels.events.try_send(MediaEvent::Dtmf(digit));
                    }
                } else if packet.payload_type == sender.params.payload_type && packet.payload.len() <= MAX_PACKET_SAMPLES {
                    let codec = sender.params.codec;
                    let samples: Vec<i16> = packet.payload.iter().map(|code| codec.decode(*code)).collect();
                    jitter.push(packet.timestamp, &samples);
                }
            }
        }
    }
    if let Some(rec) = recorder
        && let Err(err) = rec.stereo.finish().and_then(|()| rec.mono.finish())
    {
        tracing::warn!(error = %err, "could not finish recording");
    }
    stats.n_received = jitter.n_received;
    stats.n_lost = jitter.n_lost;
    stats
}

/// Sends this tick's packet: a DTMF event packet while a digit is being sent (agent audio
/// waits meanwhile), else the next agent frame or silence. Returns the audio sent.
async fn send_tick(
    socket: &UdpSocket,
    sender: &mut Sender,
    dtmf_out: &mut mpsc::Receiver<char>,
    from_agent: &mut mpsc::Receiver<Frame>,
) -> Frame {
    let frame_ts = sender.timestamp;
    sender.timestamp = sender.timestamp.wrapping_add(SAMPLES_PER_FRAME as u32);
    if sender.dtmf.is_empty()
        && let (Ok(digit), Some(_)) = (dtmf_out.try_recv(), sender.params.dtmf_payload_type)
    {
        sender.dtmf = dtmf::payloads(digit, 800);
        sender.dtmf.reverse();
        sender.dtmf_timestamp = frame_ts;
    }
    if let (Some(payload), Some(pt)) = (sender.dtmf.pop(), sender.params.dtmf_payload_type) {
        let first = u16::from_be_bytes([payload[2], payload[3]]) == SAMPLES_PER_FRAME as u16 && payload[1] & 0x80 == 0;
        let ts = sender.dtmf_timestamp;
        sender.send(socket, pt, first, ts, &payload).await;
        return SILENCE;
    }
    let agent = from_agent.try_recv().unwrap_or(SILENCE);
    let mut payload = [0u8; SAMPLES_PER_FRAME];
    for (code, sample) in payload.iter_mut().zip(&agent) {
        *code = sender.params.codec.encode(*sample);
    }
    let pt = sender.params.payload_type;
    sender.send(socket, pt, false, frame_ts, &payload).await;
    agent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Codec;

    fn params(remote: SocketAddr) -> MediaParams {
        MediaParams { remote, codec: Codec::Pcmu, payload_type: 0, dtmf_payload_type: Some(101) }
    }

    struct Ends {
        to_agent: mpsc::Receiver<Frame>,
        from_agent: mpsc::Sender<Frame>,
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
        (
            MediaChannels { to_agent: to_agent_tx, from_agent: from_agent_rx, dtmf_out: dtmf_out_rx, events: events_tx },
            Ends { to_agent, from_agent, dtmf_out, events },
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
            a.from_agent.send([1000; SAMPLES_PER_FRAME]).await.unwrap();
        }
        a.dtmf_out.send('5').await.unwrap();
        let mut loud = 0;
        for _ in 0..40 {
            let frame = b.to_agent.recv().await.unwrap();
            if frame[0] > 900 {
                loud += 1;
            }
        }
        assert!(loud >= 8, "B heard A's audio ({loud} loud frames)");
        let digit = tokio::time::timeout(Duration::from_secs(2), b.events.recv()).await.unwrap();
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
            let packet =
                Packet { marker: false, payload_type, sequence: self.sequence, timestamp: self.timestamp, ssrc: self.ssrc, payload };
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
            frames.push(ends.to_agent.recv().await.unwrap());
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
            frames.push(ends.to_agent.recv().await.unwrap());
        }
        let before_latch = sdp_port.n_received();
        for _ in 0..30 {
            natted.audio(to, 1000).await;
            late.audio(to, 8000).await;
            frames.push(ends.to_agent.recv().await.unwrap());
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
            frames.push(ends.to_agent.recv().await.unwrap());
        }
        for _ in 0..20 {
            peer.audio(to, 1000).await;
            natted.audio(to, 8000).await;
            frames.push(ends.to_agent.recv().await.unwrap());
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
            frames.push(ends.to_agent.recv().await.unwrap());
        }
        let (heard_first, heard_second) = tally(&frames, 1000, 8000);
        assert!(heard_first >= 12 && heard_second == 0, "first {heard_first}, second {heard_second} frames while both send");
        // The first stream stops; after its silence the second takes over.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        ends.drain();
        let mut frames = Vec::new();
        for _ in 0..20 {
            second.audio(to, 8000).await;
            frames.push(ends.to_agent.recv().await.unwrap());
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
}
