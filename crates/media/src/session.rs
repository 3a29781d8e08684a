//! One task per call's media: every 20 ms it plays one caller frame out of the jitter buffer
//! to the agent side, sends one agent frame (or silence) as RTP, and records both.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
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

/// The local RTP port range; ports are handed out round-robin, even numbers only.
#[derive(Debug)]
pub struct RtpPorts {
    range: RangeInclusive<u16>,
    next: AtomicU16,
}

impl RtpPorts {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let start = *range.start() + (*range.start() & 1);
        Self { next: AtomicU16::new(start), range }
    }

    /// Binds a free even port of the range on `ip`.
    pub async fn bind(&self, ip: IpAddr) -> std::io::Result<UdpSocket> {
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let n_ports = (u32::from(hi) - u32::from(lo)) / 2 + 1;
        for _ in 0..n_ports {
            let mut port = self.next.fetch_add(2, Ordering::Relaxed);
            if port < lo || port > hi.saturating_sub(1).max(lo) {
                port = lo + (lo & 1);
                self.next.store(port + 2, Ordering::Relaxed);
            }
            if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
                return Ok(socket);
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free RTP port in the range"))
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
        let local = socket.local_addr()?;
        let recorder = match &config.recording {
            Some(recording) => Some(Recorder {
                stereo: WavWriter::create(&recording.stereo, 2, SAMPLE_RATE)?,
                mono: WavWriter::create(&recording.mono, 1, SAMPLE_RATE)?,
            }),
            None => None,
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(socket, params, config, channels, recorder, cancel.clone()));
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
    let mut latched = false;
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
                if !latched && source != sender.remote {
                    // Symmetric RTP: answer where the peer really sends from (NAT).
                    sender.remote = source;
                }
                latched = true;
                last_rx = Instant::now();
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
