//! The RFC 4475 torture messages (crates/sip/tests/torture) thrown at a running server over
//! UDP and TCP: each valid request is answered (a valid response is dropped), each invalid one is answered 400 (416, 505) or
//! dropped, the server answers OPTIONS after every one, and a normal call completes after all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::helpers::{TestApp, spawn_app};
use crate::sipp::{Sipp, Transport, agent_with, import_on_trunk, wait_for_end};

/// Invalid messages that still parse and are served as requests (the sip crate's torture test
/// gives the reason for each): any answer is right for them.
const PARSED_ANYWAY: &[&str] = &["baddate", "badbranch", "unksm2", "zeromf"];

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sip/tests/torture").join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sip"))
        .map(|path| (path.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "the {kind} corpus is in {}", dir.display());
    files
}

fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The first status line answered on a datagram socket within `wait`, if any.
async fn udp_answer(socket: &UdpSocket, wait: Duration) -> Option<u16> {
    let mut buf = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await.ok()?.ok()?;
    status_of(&String::from_utf8_lossy(&buf[..len]))
}

/// The first status line answered on a fresh TCP connection within `wait`, if any.
async fn tcp_answer(sip: SocketAddr, bytes: &[u8], wait: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect(sip).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while !got.windows(2).any(|w| w == b"\r\n") {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.ok()?.ok()?;
        if read == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..read]);
    }
    status_of(&String::from_utf8_lossy(&got))
}

/// OPTIONS over UDP is answered 200 within a second: the endpoint is alive and serving.
async fn assert_alive(app: &TestApp, after: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-alive-{}\r\nFrom: <sip:p@x>;tag=1\r\n\
To: <sip:ping@127.0.0.1>\r\nCall-ID: alive-{}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        me.port(),
        me.port()
    );
    socket.send_to(options.as_bytes(), app.sip_addr).await.unwrap();
    assert_eq!(udp_answer(&socket, Duration::from_secs(1)).await, Some(200), "OPTIONS unanswered after {after}");
}

fn judge(name: &str, bytes: &[u8], valid: bool, answer: Option<u16>, transport: &str) {
    if valid && bytes.starts_with(b"SIP/2.0 ") {
        // A valid response (noreason, unreason) belongs to no transaction of ours: dropped.
        assert_eq!(answer, None, "valid response {name} over {transport} was answered");
    } else if valid {
        assert!(answer.is_some(), "valid {name} over {transport} got no answer");
    } else if !PARSED_ANYWAY.contains(&name) {
        assert!(matches!(answer, None | Some(400 | 416 | 505)), "invalid {name} over {transport} was answered {answer:?}");
    }
}

#[tokio::test]
async fn the_rfc_4475_torture_corpus_is_answered_or_dropped_and_a_call_completes_after_it() {
    let app = spawn_app().await;
    let mut answered_400 = 0;
    for (valid, kind) in [(true, "valid"), (false, "invalid")] {
        for (name, bytes) in corpus(kind) {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.send_to(&bytes, app.sip_addr).await.unwrap();
            let answer = udp_answer(&socket, Duration::from_secs(2)).await;
            judge(&name, &bytes, valid, answer, "UDP");
            answered_400 += usize::from(answer == Some(400));
            assert_alive(&app, &format!("{name} over UDP")).await;

            let answer = tcp_answer(app.sip_addr, &bytes, Duration::from_secs(2)).await;
            judge(&name, &bytes, valid, answer, "TCP");
            assert_alive(&app, &format!("{name} over TCP")).await;
        }
    }
    assert!(answered_400 >= 15, "most invalid messages are answered 400 ({answered_400})");

    // After all of it, a normal call through sipp completes.
    let sipp = Sipp::uas("answer_play_hangup.xml", Transport::Udp, &[]);
    let agent_id = agent_with(&app, serde_json::json!({})).await;
    import_on_trunk(&app, "+14155550100", sipp.addr(), Transport::Udp, &agent_id, serde_json::json!({})).await;
    let reply = app
        .post(
            "/v2/create-phone-call",
            serde_json::json!({
                "from_number": "+14155550100", "to_number": "+12125550123",
                // The scenario fails a call without it.
                "custom_sip_headers": {"X-Campaign": "spring"},
            }),
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let call = wait_for_end(&app, reply.body["call_id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(call["disconnection_reason"], "user_hangup", "{call}");
    sipp.finish(Duration::from_secs(20)).await.unwrap();
}
