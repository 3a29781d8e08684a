//! The SIP side under hostile input: transactions matched on branch, sent-by and method;
//! floods of connections and datagrams; requests outside their dialog; the endpoint dying.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::helpers::{KEY, spawn_app, spawn_app_with};
use crate::sipp::{Sipp, Transport, agent_with, import_on_trunk, wait_for_end};

fn request(method: &str, transport: &str, sent_by: SocketAddr, branch: &str, call_id: &str, tags: (&str, &str)) -> String {
    let to_tag = if tags.1.is_empty() { String::new() } else { format!(";tag={}", tags.1) };
    format!(
        "{method} sip:+14155550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {sent_by};branch={branch}\r\n\
From: <sip:+13105550199@127.0.0.1>;tag={}\r\nTo: <sip:+14155550100@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n\
CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        tags.0
    )
}

fn options(transport: &str, sent_by: SocketAddr, branch: &str, call_id: &str) -> String {
    request("OPTIONS", transport, sent_by, branch, call_id, ("caller", ""))
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(':'))).unwrap_or_default().trim()
}

async fn udp_peer(ip: [u8; 4]) -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind((Ipv4Addr::from(ip), 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// The next response on `socket` with status `status` (skipping provisional ones unless asked).
async fn response(socket: &UdpSocket, within: Duration) -> String {
    let mut buf = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(within, socket.recv_from(&mut buf)).await.expect("an answer in time").unwrap();
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

async fn tcp_from(ip: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 0))?;
    socket.connect(to).await
}

/// One SIP message read from a stream (headers and an empty body).
async fn read_tcp_response(stream: &mut TcpStream, within: Duration) -> String {
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        while !text.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before answering");
            text.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer in time");
    String::from_utf8_lossy(&text).into_owned()
}

/// OPTIONS over UDP from 127.0.0.1, retransmitted as RFC 3261 clients do (T1 = 500 ms,
/// doubling): the time to the 200.
async fn options_round_trip(sip: SocketAddr, n: usize) -> Duration {
    let (socket, addr) = udp_peer([127, 0, 0, 1]).await;
    let probe = options("UDP", addr, &format!("z9hG4bKprobe{n}"), &format!("probe{n}"));
    let started = Instant::now();
    let mut interval = Duration::from_millis(500);
    let mut buf = vec![0u8; 65_536];
    loop {
        socket.send_to(probe.as_bytes(), sip).await.unwrap();
        if let Ok(received) = tokio::time::timeout(interval, socket.recv_from(&mut buf)).await {
            let answer = String::from_utf8_lossy(&buf[..received.unwrap().0]).into_owned();
            assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "OPTIONS never answered");
        interval *= 2;
    }
}

#[tokio::test]
async fn options_with_one_branch_from_two_udp_sources_each_get_a_200_with_their_own_call_id() {
    let app = spawn_app().await;
    let ((a, a_addr), (b, b_addr)) = (udp_peer([127, 0, 0, 1]).await, udp_peer([127, 0, 0, 1]).await);
    a.send_to(options("UDP", a_addr, "z9hG4bKshared", "call-a").as_bytes(), app.sip_addr).await.unwrap();
    let answer_a = response(&a, Duration::from_secs(10)).await;
    b.send_to(options("UDP", b_addr, "z9hG4bKshared", "call-b").as_bytes(), app.sip_addr).await.unwrap();
    let answer_b = response(&b, Duration::from_secs(10)).await;
    assert!(answer_a.starts_with("SIP/2.0 200 ") && answer_b.starts_with("SIP/2.0 200 "), "{answer_a}\n{answer_b}");
    assert_eq!((header(&answer_a, "Call-ID"), header(&answer_b, "Call-ID")), ("call-a", "call-b"));
}

#[tokio::test]
async fn options_with_one_branch_over_two_tcp_connections_each_get_a_200_with_their_own_call_id() {
    let app = spawn_app().await;
    let mut a = tcp_from([127, 0, 0, 1], app.sip_addr).await.unwrap();
    let mut b = tcp_from([127, 0, 0, 1], app.sip_addr).await.unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    a.write_all(options("TCP", a_addr, "z9hG4bKshared", "call-a").as_bytes()).await.unwrap();
    let answer_a = read_tcp_response(&mut a, Duration::from_secs(10)).await;
    b.write_all(options("TCP", b_addr, "z9hG4bKshared", "call-b").as_bytes()).await.unwrap();
    let answer_b = read_tcp_response(&mut b, Duration::from_secs(10)).await;
    assert_eq!((header(&answer_a, "Call-ID"), header(&answer_b, "Call-ID")), ("call-a", "call-b"));
}

#[tokio::test]
async fn a_cancel_from_another_sent_by_does_not_cancel_a_ringing_inbound_call() {
    // One concurrency slot, held by sipp's call, so our INVITE rings waiting for it.
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |s| s.inbound_queue = Duration::from_secs(20)).await;
    let agent_id = agent_with(&app, json!({})).await;
    let reply = app
        .post(
            "/import-phone-number",
            json!({"phone_number": "+14155550100", "termination_uri": "127.0.0.1:5999", "inbound_agents": [{"agent_id": agent_id, "weight": 1}]}),
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    assert_eq!(app.patch("/update-workspace-settings", json!({"concurrency_limit": 1})).await.status, reqwest::StatusCode::OK);
    let holder = Sipp::uac("call_in.xml", Transport::Udp, "127.0.0.1", app.sip_addr, "+14155550100");
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.post("/v3/list-calls", json!({})).await.body["items"][0]["call_status"] != "ongoing" {
        assert!(Instant::now() < deadline, "sipp's call was not answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ((caller, caller_addr), (other, other_addr)) = (udp_peer([127, 0, 0, 1]).await, udp_peer([127, 0, 0, 1]).await);
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = request("INVITE", "UDP", caller_addr, "z9hG4bKring", "ringing-call", ("caller", "")).replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Contact: <sip:caller@{caller_addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()),
    );
    caller.send_to(invite.as_bytes(), app.sip_addr).await.unwrap();
    let mut ringing = false;
    while !ringing {
        let answer = response(&caller, Duration::from_secs(10)).await;
        assert!(answer.starts_with("SIP/2.0 1"), "still waiting for a slot: {answer}");
        ringing = answer.starts_with("SIP/2.0 180 ");
    }

    let cancel = |sent_by| request("CANCEL", "UDP", sent_by, "z9hG4bKring", "ringing-call", ("caller", ""));
    other.send_to(cancel(other_addr).as_bytes(), app.sip_addr).await.unwrap();
    let refused = response(&other, Duration::from_secs(10)).await;
    assert!(refused.starts_with("SIP/2.0 481 "), "the branch alone names nothing: {refused}");
    caller.send_to(cancel(caller_addr).as_bytes(), app.sip_addr).await.unwrap();
    let accepted = response(&caller, Duration::from_secs(10)).await;
    assert!(accepted.starts_with("SIP/2.0 200 ") && accepted.contains("CANCEL"), "the caller's own CANCEL matches: {accepted}");
    drop(holder);
}

#[tokio::test]
async fn a_bye_with_wrong_tags_gets_481_and_the_call_goes_on_until_hung_up() {
    let app = spawn_app().await;
    let sipp = Sipp::uas("answer_wait_bye.xml", Transport::Udp, &[]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, "+14155550100", sipp.addr(), Transport::Udp, &agent_id, json!({})).await;
    let reply = app.post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123"})).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let call_id = reply.body["call_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let call = loop {
        let call = app.get(&format!("/v2/get-call/{call_id}")).await.body;
        if call["call_status"] == "ongoing" {
            break call;
        }
        assert!(Instant::now() < deadline, "not answered: {call}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sip_call_id = call["telephony_identifier"]["sip_call_id"].as_str().unwrap().to_owned();

    let (intruder, intruder_addr) = udp_peer([127, 0, 0, 1]).await;
    let bye = request("BYE", "UDP", intruder_addr, "z9hG4bKbye1", &sip_call_id, ("not-theirs", "not-ours"));
    intruder.send_to(bye.as_bytes(), app.sip_addr).await.unwrap();
    let answer = response(&intruder, Duration::from_secs(10)).await;
    assert!(answer.starts_with("SIP/2.0 481 "), "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.get(&format!("/v2/get-call/{call_id}")).await.body["call_status"], "ongoing", "the call goes on");

    assert_eq!(app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await.status, reqwest::StatusCode::NO_CONTENT);
    let ended = wait_for_end(&app, &call_id, Duration::from_secs(20)).await;
    assert_eq!((ended["call_status"].as_str(), ended["disconnection_reason"].as_str()), (Some("ended"), Some("manual_stopped")));
    sipp.finish(Duration::from_secs(10)).await.expect("sipp got our BYE and answered it");
}

/// Opens `n` TCP connections to `to`, spread over source addresses 127.0.1.x (`per_ip`
/// each), each sending `prefix` and then nothing. Connections the server refuses count too.
async fn hold_connections(to: SocketAddr, n: usize, per_ip: usize, prefix: &'static [u8]) -> Vec<TcpStream> {
    let mut streams = Vec::new();
    for i in 0..n {
        let ip = [127, 0, 1, u8::try_from(1 + i / per_ip).unwrap()];
        if let Ok(mut stream) = tcp_from(ip, to).await {
            let _ = stream.write_all(prefix).await;
            streams.push(stream);
        }
    }
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_open_connections_and_ten_thousand_junk_datagrams_a_second_leave_options_answered_within_a_second() {
    let app = spawn_app().await;
    let sip = app.sip_addr;
    let held = hold_connections(sip, 1_000, 25, b"OPTIONS sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1").await;
    assert_eq!(held.len(), 1_000);
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood = std::thread::spawn({
        let flooding = flooding.clone();
        move || {
            let socket = std::net::UdpSocket::bind("127.0.0.9:0").unwrap();
            let junk = [b"\x16\x03\x01 not SIP at all ".repeat(40), b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n\r\n".to_vec()];
            // 10,000 datagrams a second, in bursts of 100 every 10 ms.
            let mut n_sent = 0u64;
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..100 {
                    let _ = socket.send_to(&junk[(n_sent % 2) as usize], sip);
                    n_sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            n_sent
        }
    });
    let mut times = Vec::new();
    for n in 0..40 {
        times.push(options_round_trip(sip, n).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let n_junk = flood.join().unwrap();
    times.sort();
    eprintln!("OPTIONS under flood ({n_junk} junk datagrams, 1000 half-open TCP): median {:?}, max {:?}", times[20], times[39]);
    assert!(times[39] < Duration::from_secs(1), "{times:?}");
    drop(held);
}

#[tokio::test]
async fn a_header_block_that_never_ends_is_closed_after_the_maximum_message_size() {
    let app = spawn_app().await;
    let mut stream = tcp_from([127, 0, 0, 1], app.sip_addr).await.unwrap();
    stream.write_all(b"OPTIONS sip:1@127.0.0.1 SIP/2.0\r\n").await.unwrap();
    let line = format!("X-Filler: {}\r\n", "a".repeat(90));
    let mut n_sent = 0usize;
    let write_until_closed = async {
        while stream.write_all(line.as_bytes()).await.is_ok() {
            n_sent += line.len();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), write_until_closed).await.expect("the server closed the stream");
    eprintln!("endless header block closed after {n_sent} bytes sent");
    assert!(n_sent < 16 * sip::msg::MAX_MESSAGE_BYTES, "closed near the maximum ({}), not after {n_sent}", sip::msg::MAX_MESSAGE_BYTES);
    options_round_trip(app.sip_addr, 0).await;
}

#[tokio::test]
async fn closing_the_sip_endpoint_makes_the_service_stop_with_an_error() {
    let app = spawn_app().await;
    app.sip_endpoint.close().await;
    let result = app.exited_within(Duration::from_secs(30)).await.expect("the service stopped by itself");
    let err = result.expect_err("a stop with an error");
    assert!(err.to_string().contains("SIP"), "{err:#}");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); the name was field 2, so here they are 11 and 12.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_1024_descriptor_limit_1100_idle_connections_leave_sip_and_http_answering_without_spinning() {
    use std::io::BufRead;
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=1024")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_uponai"))
        .args(["serve", "--http", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--rtp-ports", "22000-22999"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("UPONAI_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) and uponai run");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    // Killed even when an assertion below fails: a leaked server would load other tests.
    let mut child = KillOnDrop(child);
    let line = std::io::BufReader::new(stdout).lines().map(Result::unwrap).find(|l| l.starts_with("uponai listening on ")).unwrap();
    // "uponai listening on http://127.0.0.1:1234 (SIP on 127.0.0.1:5678 udp+tcp)"
    let url = line.split_whitespace().nth(3).unwrap().to_owned();
    let sip: SocketAddr = line.split("SIP on ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();

    let held = hold_connections(sip, 1_100, 22, b"").await;
    // Wait until the server has accepted (or refused) every one of them: its open files stop
    // changing for half a second (polled, with a deadline).
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut n_fds, mut steady_since) = (fds(), Instant::now());
    while steady_since.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now_fds = fds();
        if now_fds != n_fds {
            (n_fds, steady_since) = (now_fds, Instant::now());
        }
    }

    let ticks_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks_idle = cpu_ticks(pid) - ticks_before;

    let udp = options_round_trip(sip, 0).await;
    let mut tcp = tcp_from([127, 0, 0, 1], sip).await.expect("a new connection is taken");
    let tcp_addr = tcp.local_addr().unwrap();
    let started = Instant::now();
    tcp.write_all(options("TCP", tcp_addr, "z9hG4bKtcpprobe", "tcp-probe").as_bytes()).await.unwrap();
    let answer = read_tcp_response(&mut tcp, Duration::from_secs(10)).await;
    let tcp_time = started.elapsed();
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    let http = reqwest::Client::new().get(format!("{url}/list-voices")).bearer_auth(KEY).send().await.expect("HTTP answers");
    eprintln!(
        "1100 idle connections ({} held open by the client): server fds {n_fds}, idle CPU {ticks_idle} ticks/s, OPTIONS udp {udp:?} tcp {tcp_time:?}",
        held.len()
    );
    assert_eq!(http.status(), reqwest::StatusCode::OK);
    assert!(n_fds < 1024, "{n_fds}");
    assert!(ticks_idle < 20, "the server is not spinning: {ticks_idle} ticks in a second");
    drop(held);
    let _ = child.0.kill();
    let _ = child.0.wait();
}

/// A child process killed when dropped (on a failed assertion too).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
