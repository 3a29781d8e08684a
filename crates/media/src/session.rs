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
use crate::playout::{AgentFrame, CallerFrame, Playout, PlayoutEvent, PlayoutGate};
use crate::rtp::Packet;
use crate::sdp::MediaParams;
use crate::wav::WavWriter;
use crate::{Frame, SAMPLE_RATE, SAMPLES_PER_FRAME, SILENCE};

const FRAME_INTERVAL: Duration = Duration::from_millis(20);
/// The longest audio packet accepted (120 ms); G.711 is one byte per sample.
const MAX_PACKET_SAMPLES: usize = 960;
/// Datagrams a tick takes from the socket before it plays: a second of 20 ms packets, so a
/// flood cannot hold a tick, and a stall of the runtime shorter than that loses nothing.
const MAX_DRAIN_PER_TICK: usize = 50;

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
    /// Agent audio started or ended going out.
    Playout(PlayoutEvent),
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
    /// Agent frames dropped because their response was cancelled (barge-in).
    pub n_agent_frames_dropped: u64,
    /// Caller frames the agent side had no room for.
    pub n_caller_frames_dropped: u64,
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
    /// Caller audio, one stamped frame per 20 ms (dropped and counted if the receiver lags).
    pub to_agent: mpsc::Sender<CallerFrame>,
    /// Agent audio to send; silence when empty. Bounded, so a producer is paced by it.
    pub from_agent: mpsc::Receiver<AgentFrame>,
    /// Frames of generations below the gate are dropped at the next tick.
    pub gate: PlayoutGate,
    /// Digits to send as RFC 4733 events.
    pub dtmf_out: mpsc::Receiver<char>,
    /// Events for the call task. Bounded: it must keep up (events are few: digits, one
    /// playout start and end per response); one it has no room for is dropped and logged.
    pub events: mpsc::Sender<MediaEvent>,
}

/// A running media task.
pub struct MediaSession {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<MediaStats>,
    local: SocketAddr,
    /// The media clock's zero: frames' `at` and playout times count from here.
    started: Instant,
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
        let started = Instant::now();
        let clock = Clock { cancel: cancel.clone(), started };
        let task = tokio::spawn(run(socket, params, config, policy, channels, recorder, clock));
        Ok(Self { cancel, task, local, started })
    }

    /// The media clock now (time since the session started).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
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

/// When the session started (the media clock's zero) and what stops it.
struct Clock {
    cancel: CancellationToken,
    started: Instant,
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
    clock: Clock,
) -> MediaStats {
    let Clock { cancel, started } = clock;
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
    let mut inbound = Inbound {
        jitter: JitterBuffer::new(config.jitter_depth),
        dtmf: DtmfReceiver::default(),
        filter: SourceFilter::new(policy, sender.remote, started),
        last_rx: started,
    };
    let mut stats = MediaStats { send_jitter_histogram: vec![0; 201], ..MediaStats::default() };
    let mut ticker = tokio::time::interval(FRAME_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut recv_buf = vec![0u8; 2048];
    let mut no_audio_reported = false;
    let mut last_send: Option<Instant> = None;
    let mut playout = Playout::default();
    let mut playout_events = Vec::new();
    let mut frame_index: u64 = 0;
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

                // A late tick (a busy runtime; missed ticks then come in a burst) finds packets
                // waiting in the socket: take them first, or the buffer would look empty and the
                // tick would play silence ahead of audio that has already arrived, shifting the
                // rest of the call.
                for _ in 0..MAX_DRAIN_PER_TICK {
                    let Ok((len, source)) = socket.try_recv_from(&mut recv_buf) else { break };
                    inbound.on_datagram(&recv_buf[..len], source, now, &mut sender, &mut stats, &channels.events);
                }
                let at = now.duration_since(started);
                let (caller, real) = inbound.jitter.pop_stamped();
                let stamped = CallerFrame { index: frame_index, at, samples: caller, concealed: !real };
                frame_index += 1;
                if channels.to_agent.try_send(stamped).is_err() {
                    stats.n_caller_frames_dropped += 1;
                }
                let agent = send_tick(&socket, &mut sender, &mut channels, &mut playout, at, &mut playout_events).await;
                report(&channels.events, &mut playout_events);
                stats.n_sent += 1;
                if let Some(rec) = recorder.as_mut()
                    && let Err(err) = rec.write(&caller, &agent) {
                        tracing::warn!(error = %err, "recording failed; continuing without it");
                        recorder = None;
                    }
                if !no_audio_reported && now.duration_since(inbound.last_rx) >= config.no_audio_timeout {
                    no_audio_reported = true;
                    let _ = channels.events.try_send(MediaEvent::NoAudio);
                }
            }
            received = socket.recv_from(&mut recv_buf) => {
                let Ok((len, source)) = received else { continue };
                inbound.on_datagram(&recv_buf[..len], source, Instant::now(), &mut sender, &mut stats, &channels.events);
            }
        }
    }
    playout.end(true, &mut playout_events);
    report(&channels.events, &mut playout_events);
    stats.n_agent_frames_dropped = playout.n_dropped;
    if let Some(rec) = recorder
        && let Err(err) = rec.stereo.finish().and_then(|()| rec.mono.finish())
    {
        tracing::warn!(error = %err, "could not finish recording");
    }
    stats.n_received = inbound.jitter.n_received;
    stats.n_lost = inbound.jitter.n_lost;
    stats
}

/// The receiving side of a session: which packets are taken, and where their audio and digits go.
struct Inbound {
    jitter: JitterBuffer,
    dtmf: DtmfReceiver,
    filter: SourceFilter,
    /// When the last taken packet came.
    last_rx: Instant,
}

impl Inbound {
    fn on_datagram(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Instant,
        sender: &mut Sender,
        stats: &mut MediaStats,
        events: &mpsc::Sender<MediaEvent>,
    ) {
        let Ok(packet) = Packet::parse(datagram) else { return };
        match self.filter.judge(source, packet.ssrc, now) {
            Verdict::Take => {}
            Verdict::Latch => {
                // Symmetric RTP: answer where the peer really sends from (NAT).
                tracing::info!(sdp = %sender.remote, %source, "rtp.latched");
                sender.remote = source;
                stats.latched_to = Some(source);
            }
            Verdict::Restart => {
                tracing::info!(ssrc = packet.ssrc, "rtp.ssrc_restart");
                self.jitter.restart();
                self.dtmf = DtmfReceiver::default();
                stats.n_ssrc_restarts += 1;
            }
            Verdict::RejectSource => {
                stats.n_rejected_source += 1;
                return;
            }
            Verdict::RejectSsrc => {
                stats.n_rejected_ssrc += 1;
                return;
            }
        }
        self.last_rx = now;
        if Some(packet.payload_type) == sender.params.dtmf_payload_type {
            if let Some(digit) = self.dtmf.on_payload(packet.timestamp, packet.payload) {
                let _ = events.try_send(MediaEvent::Dtmf(digit));
            }
        } else if packet.payload_type == sender.params.payload_type && packet.payload.len() <= MAX_PACKET_SAMPLES {
            let codec = sender.params.codec;
            let samples: Vec<i16> = packet.payload.iter().map(|code| codec.decode(*code)).collect();
            self.jitter.push(packet.timestamp, &samples);
        }
    }
}

fn report(events: &mpsc::Sender<MediaEvent>, playout_events: &mut Vec<PlayoutEvent>) {
    for event in playout_events.drain(..) {
        if events.try_send(MediaEvent::Playout(event)).is_err() {
            tracing::warn!("media.event_dropped: the call task is not reading its events");
        }
    }
}

/// Sends this tick's packet: a DTMF event packet while a digit is being sent (agent audio
/// waits meanwhile), else the next allowed agent frame or silence. Returns the audio sent.
async fn send_tick(
    socket: &UdpSocket,
    sender: &mut Sender,
    channels: &mut MediaChannels,
    playout: &mut Playout,
    at: Duration,
    playout_events: &mut Vec<PlayoutEvent>,
) -> Frame {
    let frame_ts = sender.timestamp;
    sender.timestamp = sender.timestamp.wrapping_add(SAMPLES_PER_FRAME as u32);
    if sender.dtmf.is_empty()
        && let (Ok(digit), Some(_)) = (channels.dtmf_out.try_recv(), sender.params.dtmf_payload_type)
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
    let from_agent = &mut channels.from_agent;
    let agent = playout.next(|| from_agent.try_recv().ok(), channels.gate.first_allowed(), at, playout_events);
    let mut payload = [0u8; SAMPLES_PER_FRAME];
    for (code, sample) in payload.iter_mut().zip(&agent) {
        *code = sender.params.codec.encode(*sample);
    }
    let pt = sender.params.payload_type;
    sender.send(socket, pt, false, frame_ts, &payload).await;
    agent
}

#[cfg(test)]
mod tests;
