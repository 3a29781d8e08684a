//! Shared by the `sip` and `pacing` test binaries; each uses part of it.
#![allow(dead_code)]

//! Running sipp, and reading what a call left behind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::TestApp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn sipp_flag(self) -> &'static str {
        match self {
            Self::Udp => "u1",
            Self::Tcp => "t1",
        }
    }

    /// How a termination URI asks for this transport.
    pub fn uri_param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

pub struct Sipp {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// Dropped after `child` (fields drop in order), which is killed on drop.
    _ports: PortBlock,
}

/// sipp's ports come from 10000-19999: below the Linux ephemeral range (32768-60999, where
/// port-0 binds and outgoing connections land) and clear of the apps' test RTP ranges
/// (20000-29999, 21000-21999). Each sipp child gets a block of its own.
const RANGE_START: u16 = 10_000;
const RANGE_END: u16 = 20_000;
/// A block: SIP (UDP and TCP) at +0, audio RTP at +2 (RTCP +3 is left alone), video RTP at
/// +4 (sipp 3.6.1 binds `-mp` and `-mp + 2` and nothing else for media), control at +6, and
/// +7 held by the test process as the block's lock.
const BLOCK: u16 = 8;

/// A block of ports held for one sipp (or one `free_port` caller). Disjoint within the process
/// by an atomic counter; across processes (the `sip`, `pacing` and `webhooks` binaries, or
/// several checkouts on one machine) by the holder binding the block's last port (+7), which
/// nothing else in the block uses, until it drops the block or dies. The counter starts at a
/// quarter of the range per binary, so concurrent binaries rarely even meet on a lock.
struct PortBlock {
    base: u16,
    /// The block's last port, bound for as long as the block is held.
    _lock: std::net::UdpSocket,
}

impl PortBlock {
    fn take() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let blocks = u32::from((RANGE_END - RANGE_START) / BLOCK);
        let slot = match env!("CARGO_CRATE_NAME") {
            "sip" => 0,
            "pacing" => 1,
            "webhooks" => 2,
            _ => 3,
        };
        for _ in 0..blocks {
            let index = (slot * blocks / 4 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % blocks;
            let base = RANGE_START + u16::try_from(index).unwrap() * BLOCK;
            // Binding is exclusive across processes and undone when the process dies.
            let Ok(lock) = std::net::UdpSocket::bind(("127.0.0.1", base + 7)) else { continue };
            // Held by no test of ours; skip it if another program has one of its ports.
            let bindable = std::net::TcpListener::bind(("127.0.0.1", base)).is_ok()
                && [0, 2, 4, 6].iter().all(|offset| std::net::UdpSocket::bind(("127.0.0.1", base + offset)).is_ok());
            if bindable {
                return Self { base, _lock: lock };
            }
        }
        panic!("no free block of {BLOCK} ports left in {RANGE_START}-{RANGE_END}");
    }
}

/// A port free on 127.0.0.1 for both UDP and TCP, and kept from every other caller and sipp
/// for the rest of this process.
pub fn free_port() -> u16 {
    let block = PortBlock::take();
    let port = block.base;
    std::mem::forget(block);
    port
}

pub fn scenario(name: &str) -> String {
    format!("{}/tests/sip/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

enum Scenario {
    File(String),
    /// A scenario written out for this sipp alone.
    Text(String),
}

/// A scenario's text with `replacements` made.
fn templated(scenario_file: &str, replacements: &[(&str, &str)]) -> Scenario {
    let mut text = std::fs::read_to_string(scenario(scenario_file)).unwrap();
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    Scenario::Text(text)
}

impl Sipp {
    /// sipp as the trunk (UAS) on a free port of 127.0.0.1.
    pub fn uas(scenario_file: &str, transport: Transport, keys: &[(&str, &str)]) -> Self {
        Self::start(&Scenario::File(scenario(scenario_file)), transport, "127.0.0.1", None, keys)
    }

    /// sipp as the trunk, with `replacements` made in a copy of the scenario first (sipp
    /// checks response codes when it loads a scenario, so they cannot be `-key`s).
    pub fn uas_from_template(scenario_file: &str, transport: Transport, replacements: &[(&str, &str)]) -> Self {
        Self::start(&templated(scenario_file, replacements), transport, "127.0.0.1", None, &[])
    }

    /// sipp as a trunk answering any number of calls from a scenario template, logging every
    /// message with its receive time; read them with `stop_and_read_invites`.
    pub fn uas_traced(scenario_file: &str, transport: Transport, replacements: &[(&str, &str)]) -> Self {
        Self::start(&templated(scenario_file, replacements), transport, "127.0.0.1", None, &[("__traced", "1")])
    }

    /// Stops a traced sipp; the receive time (seconds) and text of the first INVITE of each
    /// Call-ID it got (UDP retransmissions of an INVITE are the same call, not a new one).
    pub async fn stop_and_read_invites(self) -> Vec<(f64, String)> {
        let mut seen = std::collections::HashSet::new();
        self.stop_and_read_all_invites()
            .await
            .into_iter()
            .filter(|(_, text)| {
                let call_id = text.lines().find_map(|l| l.strip_prefix("Call-ID:")).unwrap_or_default().trim().to_owned();
                seen.insert(call_id)
            })
            .collect()
    }

    /// Every INVITE message sipp received, retransmissions included.
    pub async fn stop_and_read_all_invites(mut self) -> Vec<(f64, String)> {
        let _ = self.child.kill().await;
        let log = std::fs::read_to_string(self._dir.path().join("messages.log")).unwrap_or_default();
        let mut invites = Vec::new();
        let mut at = None;
        let mut lines = log.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(stamp) = line.strip_prefix("----------------------------------------------- ") {
                // "2026-11-24 11:00:46.440189": seconds of the day are enough within a test.
                at = stamp.split_whitespace().nth(1).and_then(|clock| {
                    let mut parts = clock.split(':');
                    let (h, m, s) =
                        (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?);
                    Some(h * 3600.0 + m * 60.0 + s)
                });
            } else if line.contains("message received") {
                let mut message = String::new();
                while let Some(next) = lines.peek() {
                    if next.starts_with("-----------------------------------------------") {
                        break;
                    }
                    message.push_str(lines.next().unwrap_or_default());
                    message.push('\n');
                }
                if message.trim_start().starts_with("INVITE ") {
                    invites.push((at.unwrap_or_default(), message));
                }
            }
        }
        invites
    }

    /// sipp as a caller (UAC) from `ip` to `target`, dialing `service`.
    pub fn uac(scenario_file: &str, transport: Transport, ip: &str, target: SocketAddr, service: &str) -> Self {
        Self::start(&Scenario::File(scenario(scenario_file)), transport, ip, Some((target, service)), &[])
    }

    fn start(scenario: &Scenario, transport: Transport, ip: &str, uac: Option<(SocketAddr, &str)>, keys: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sipp.log");
        let scenario_path = match scenario {
            Scenario::File(path) => path.clone(),
            Scenario::Text(text) => {
                let copy = dir.path().join("scenario.xml");
                std::fs::write(&copy, text).unwrap();
                copy.to_str().unwrap().to_owned()
            }
        };
        let ports = PortBlock::take();
        let port = ports.base;
        let mut command = Command::new("sipp");
        if let Some((target, _)) = uac {
            command.arg(target.to_string());
        }
        let traced = keys.iter().any(|(k, _)| *k == "__traced");
        command.args(["-sf", &scenario_path, "-i", ip, "-mi", ip, "-nostdin"]);
        if traced {
            command.arg("-trace_msg").arg("-message_file").arg(dir.path().join("messages.log"));
        } else {
            command.args(["-m", "1"]);
        }
        command
            .args(["-t", transport.sipp_flag(), "-timeout", "120s", "-timeout_error", "-max_recv_loops", "1000"])
            .args(["-p", &port.to_string(), "-mp", &(port + 2).to_string(), "-cp", &(port + 6).to_string()])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some((_, service)) = uac {
            command.args(["-s", service]);
        }
        for (key, value) in keys.iter().filter(|(k, _)| *k != "__traced") {
            command.args(["-key", key, value]);
        }
        let child = command.spawn().expect("sipp is installed (Debian package sip-tester)");
        wait_until_bound(ip, port, transport);
        Self { child, port, log, _dir: dir, _ports: ports }
    }

    /// A file in sipp's working directory (what its scenario's `exec command`s write).
    pub fn file(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits for sipp to finish its one call; `Ok` if sipp counted it successful.
    pub async fn finish(mut self, timeout: Duration) -> Result<(), String> {
        let status = tokio::time::timeout(timeout, self.child.wait()).await;
        let errors = std::fs::read_to_string(self._dir.path().join("errors.log")).unwrap_or_default();
        let screen = std::fs::read_to_string(&self.log).unwrap_or_default();
        match status {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("sipp failed ({status}):\n{errors}\n{}", tail(&screen))),
            _ => Err(format!("sipp did not finish in {timeout:?}:\n{errors}\n{}", tail(&screen))),
        }
    }
}

/// Returns once sipp holds its port (binding it ourselves fails), or after five seconds.
fn wait_until_bound(ip: &str, port: u16, transport: Transport) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let taken = match transport {
            Transport::Udp => std::net::UdpSocket::bind((ip, port)).is_err(),
            Transport::Tcp => std::net::TcpListener::bind((ip, port)).is_err(),
        };
        if taken {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(text: &str) -> String {
    text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Polls Get Call until the call has ended one way or another.
pub async fn wait_for_end(app: &TestApp, call_id: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let call = app.get(&format!("/v2/get-call/{call_id}")).await.body;
        if ["ended", "not_connected", "error"].contains(&call["call_status"].as_str().unwrap_or_default()) {
            return call;
        }
        assert!(tokio::time::Instant::now() < deadline, "call did not end in {timeout:?}: {call}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An agent whose settings are `agent_extra` and whose LLM says nothing first (so the agent's
/// recording channel stays silent unless a test wants otherwise).
pub async fn agent_with(app: &TestApp, agent_extra: Value) -> String {
    let llm_id = app.create_llm(json!({"general_prompt": "You are a test agent.", "begin_message": ""})).await;
    let mut body = json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm_id}});
    body.as_object_mut().unwrap().extend(agent_extra.as_object().unwrap().clone());
    let reply = app.post("/create-agent", body).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    reply.body["agent_id"].as_str().unwrap().to_owned()
}

/// Imports `number` on a trunk at `trunk` (host:port) with `transport`, bound to `agent_id`
/// both ways; returns nothing (asserts success).
pub async fn import_on_trunk(app: &TestApp, number: &str, trunk: SocketAddr, transport: Transport, agent_id: &str, extra: Value) {
    let mut body = json!({
        "phone_number": number,
        "termination_uri": format!("sip:{trunk};transport={}", transport.uri_param()),
        "sip_trunk_auth_username": "trunkuser",
        "sip_trunk_auth_password": "trunkpass",
        "outbound_agents": [{"agent_id": agent_id, "weight": 1}],
        "inbound_agents": [{"agent_id": agent_id, "weight": 1}],
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let reply = app.post("/import-phone-number", body).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
}

/// The decoded audio of sipp's g711a.pcap: every RTP payload, A-law decoded, in order.
pub fn pcap_audio() -> Vec<f64> {
    let bytes = std::fs::read("/usr/share/sip-tester/g711a.pcap").expect("sipp's g711a.pcap");
    let mut samples = Vec::new();
    let mut offset = 24;
    while offset + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap()) as usize;
        let packet = &bytes[offset + 16..offset + 16 + len];
        offset += 16 + len;
        let ip = &packet[14..];
        let ihl = usize::from(ip[0] & 0x0F) * 4;
        let rtp = &ip[ihl + 8..];
        samples.extend(rtp[12..].iter().map(|code| f64::from(media::g711::alaw_to_linear(*code))));
    }
    samples
}

/// One channel (0 = left) of a stereo 16-bit WAV.
pub fn channel(wav: &[i16], index: usize) -> Vec<f64> {
    wav.chunks_exact(2).map(|pair| f64::from(pair[index])).collect()
}

pub fn rms(samples: &[f64]) -> f64 {
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

/// The best normalised correlation of `probe` against `signal` over every lag (in steps of
/// one sample across the first `max_lag` samples). The dot products come from one FFT
/// cross-correlation, so a test does not spend seconds of CPU its neighbours' calls need.
pub fn best_correlation(signal: &[f64], probe: &[f64], max_lag: usize) -> f64 {
    use rustfft::{FftPlanner, num_complex::Complex};

    let n_lags = max_lag.min(signal.len().saturating_sub(probe.len()));
    if n_lags == 0 || probe.is_empty() {
        return 0.0;
    }
    let window = &signal[..n_lags + probe.len()];
    let n = (window.len() + probe.len()).next_power_of_two();
    let padded = |samples: &[f64]| {
        let mut buffer: Vec<Complex<f64>> = samples.iter().map(|s| Complex::new(*s, 0.0)).collect();
        buffer.resize(n, Complex::new(0.0, 0.0));
        buffer
    };
    let mut planner = FftPlanner::new();
    let (forward, inverse) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let (mut a, mut b) = (padded(window), padded(probe));
    forward.process(&mut a);
    forward.process(&mut b);
    let mut products: Vec<Complex<f64>> = a.iter().zip(&b).map(|(x, y)| x * y.conj()).collect();
    inverse.process(&mut products);
    // Running energy of the signal's window at each lag.
    let mut squares = vec![0.0; window.len() + 1];
    for (i, s) in window.iter().enumerate() {
        squares[i + 1] = squares[i] + s * s;
    }
    let probe_energy = probe.iter().map(|s| s * s).sum::<f64>().sqrt();
    (0..n_lags)
        .map(|lag| {
            let dot = products[lag].re / n as f64;
            let energy = (squares[lag + probe.len()] - squares[lag]).max(0.0).sqrt();
            if energy < 1e-9 || probe_energy == 0.0 { 0.0 } else { dot / (energy * probe_energy) }
        })
        .fold(0.0, f64::max)
}

#[test]
fn best_correlation_finds_a_probe_at_its_lag() {
    let mut state = 0x2545_f491_u32;
    let signal: Vec<f64> = (0..4_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            f64::from(state % 1000) - 500.0
        })
        .collect();
    let probe = signal[1_234..2_234].to_vec();
    assert!((best_correlation(&signal, &probe, 3_000) - 1.0).abs() < 1e-6);
    assert!(best_correlation(&signal, &probe, 1_000) < 0.5, "the lag is beyond the range searched");
    let silence = vec![0.0; 4_000];
    assert_eq!(best_correlation(&silence, &probe, 3_000), 0.0);
}

/// Downloads a recording through its signed URL, without the API key.
pub async fn download_recording(url: &str) -> Vec<i16> {
    let response = reqwest::get(url).await.expect("recording link answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    let bytes = response.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.wav");
    std::fs::write(&path, &bytes).unwrap();
    let (channels, samples) = media::wav::read(&path).unwrap();
    assert!(channels == 1 || channels == 2);
    samples
}
