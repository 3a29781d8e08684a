//! The endpoint task against real loopback sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn endpoint(limits: TcpLimits) -> (Endpoint, mpsc::Receiver<Incoming>) {
    Endpoint::bind(EndpointConfig { bind: "127.0.0.1:0".parse().unwrap(), tcp: limits }).await.unwrap()
}

fn request(method: &str, sent_by: SocketAddr, branch: &str, call_id: &str) -> String {
    format!(
        "{method} sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};branch={branch}\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:1@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn udp_peer() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

async fn receive(socket: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

async fn next_incoming(incoming: &mut mpsc::Receiver<Incoming>) -> Incoming {
    tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await.expect("a request").expect("endpoint running")
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(':'))).unwrap_or_default().trim()
}

#[tokio::test]
async fn requests_with_one_branch_from_two_senders_are_two_transactions() {
    let (endpoint, mut incoming) = endpoint(TcpLimits::recommended()).await;
    let ((a, a_addr), (b, b_addr)) = (udp_peer().await, udp_peer().await);
    a.send_to(request("OPTIONS", a_addr, "z9hG4bKsame", "call-a").as_bytes(), endpoint.local_addr()).await.unwrap();
    b.send_to(request("OPTIONS", b_addr, "z9hG4bKsame", "call-b").as_bytes(), endpoint.local_addr()).await.unwrap();
    for _ in 0..2 {
        let Incoming { request, tx, .. } = next_incoming(&mut incoming).await;
        tx.unwrap().respond(Response::to(&request, 200, "OK")).await;
    }
    assert_eq!(header(&receive(&a).await, "Call-ID"), "call-a");
    assert_eq!(header(&receive(&b).await, "Call-ID"), "call-b");
}

#[tokio::test]
async fn a_cancel_from_another_sender_does_not_reach_the_invite() {
    let (endpoint, mut incoming) = endpoint(TcpLimits::recommended()).await;
    let ((caller, caller_addr), (other, other_addr)) = (udp_peer().await, udp_peer().await);
    caller.send_to(request("INVITE", caller_addr, "z9hG4bKinv", "c1").as_bytes(), endpoint.local_addr()).await.unwrap();
    assert!(receive(&caller).await.starts_with("SIP/2.0 100 "));
    let invite = next_incoming(&mut incoming).await;

    other.send_to(request("CANCEL", other_addr, "z9hG4bKinv", "c1").as_bytes(), endpoint.local_addr()).await.unwrap();
    assert!(receive(&other).await.starts_with("SIP/2.0 481 "), "another sent-by names no transaction of ours");
    caller.send_to(request("CANCEL", caller_addr, "z9hG4bKinv", "c1").as_bytes(), endpoint.local_addr()).await.unwrap();
    assert!(receive(&caller).await.starts_with("SIP/2.0 200 "));
    let cancel = next_incoming(&mut incoming).await;
    assert_eq!(cancel.request.method, Method::Cancel, "only the caller's own CANCEL reaches the user");
    assert!(incoming.try_recv().is_err());
    drop(invite);
}

#[tokio::test]
async fn requests_the_user_has_no_room_for_are_answered_503_with_retry_after() {
    let (endpoint, _incoming) = endpoint(TcpLimits::recommended()).await;
    let (peer, peer_addr) = udp_peer().await;
    for n in 0..=INCOMING_QUEUE {
        let options = request("OPTIONS", peer_addr, &format!("z9hG4bK{n}"), &format!("c{n}"));
        peer.send_to(options.as_bytes(), endpoint.local_addr()).await.unwrap();
        if n % 64 == 0 {
            // Let the endpoint keep up, so the socket buffer does not drop any.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let answer = receive(&peer).await;
    assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
    assert_eq!(header(&answer, "Retry-After"), RETRY_AFTER_SECS);
    assert_eq!(header(&answer, "Call-ID"), format!("c{INCOMING_QUEUE}"), "the first request with no room");
}

#[tokio::test]
async fn a_panic_in_the_endpoint_task_is_reported_by_closed() {
    let (endpoint, _incoming) = endpoint(TcpLimits::recommended()).await;
    endpoint.commands.send(Command::Panic).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(5), endpoint.closed()).await.unwrap();
    assert_eq!(exit, EndpointExit::Panicked("asked to panic".into()));
}

#[tokio::test]
async fn closing_the_endpoint_resolves_closed() {
    let (endpoint, mut incoming) = endpoint(TcpLimits::recommended()).await;
    endpoint.close().await;
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), endpoint.closed()).await.unwrap(), EndpointExit::Stopped);
    assert!(incoming.recv().await.is_none(), "the user learns too: its channel closes");
}

/// Reads until the peer closes; `Err` if it is still open after `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Result<(), ()> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| ())
}

#[tokio::test]
async fn a_connection_that_never_finishes_a_message_is_closed_after_the_idle_timeout() {
    let limits = TcpLimits { idle_timeout: Duration::from_millis(300), ..TcpLimits::recommended() };
    let (endpoint, _incoming) = endpoint(limits).await;
    let mut half_open = tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap();
    half_open.write_all(b"OPTIONS sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP").await.unwrap();
    let started = Instant::now();
    closed_within(&mut half_open, Duration::from_secs(5)).await.expect("closed");
    assert!(started.elapsed() >= Duration::from_millis(250), "not before the timeout: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_connection_that_has_spoken_may_stay_quiet_between_messages() {
    let limits = TcpLimits { idle_timeout: Duration::from_millis(200), ..TcpLimits::recommended() };
    let (endpoint, mut incoming) = endpoint(limits).await;
    let mut stream = tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap();
    let peer = stream.local_addr().unwrap();
    stream.write_all(request("OPTIONS", peer, "z9hG4bKt1", "t1").replace("UDP", "TCP").as_bytes()).await.unwrap();
    let first = next_incoming(&mut incoming).await;
    first.tx.unwrap().respond(Response::to(&first.request, 200, "OK")).await;
    assert!(closed_within(&mut stream, Duration::from_millis(800)).await.is_err(), "still open after four idle timeouts");
    stream.write_all(request("OPTIONS", peer, "z9hG4bKt2", "t2").replace("UDP", "TCP").as_bytes()).await.unwrap();
    assert_eq!(next_incoming(&mut incoming).await.request.call_id(), "t2");
}

#[tokio::test]
async fn a_header_block_without_an_end_is_closed_at_the_maximum_message_size() {
    let (endpoint, _incoming) = endpoint(TcpLimits::recommended()).await;
    let mut stream = tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap();
    stream.write_all(b"OPTIONS sip:1@127.0.0.1 SIP/2.0\r\n").await.unwrap();
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut sent = 0;
    while sent <= 4 * MAX_MESSAGE_BYTES {
        if stream.write_all(line).await.is_err() {
            break;
        }
        sent += line.len();
    }
    closed_within(&mut stream, Duration::from_secs(5)).await.expect("closed");
    assert!(sent <= 4 * MAX_MESSAGE_BYTES, "the endpoint stopped reading near the maximum, not after {sent} bytes");
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_closed_at_once() {
    let limits = TcpLimits { max_connections_per_ip: 2, ..TcpLimits::recommended() };
    let (endpoint, _incoming) = endpoint(limits).await;
    let mut kept = Vec::new();
    for _ in 0..2 {
        kept.push(tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap());
    }
    let mut third = tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap();
    closed_within(&mut third, Duration::from_secs(5)).await.expect("the third is closed");
    for stream in &mut kept {
        assert!(closed_within(stream, Duration::from_millis(200)).await.is_err(), "the first two stay open");
    }
}

/// The largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65_507;

#[tokio::test]
async fn a_datagram_over_the_maximum_message_size_is_dropped_and_the_next_one_served() {
    let (endpoint, mut incoming) = endpoint(TcpLimits::recommended()).await;
    let (peer, peer_addr) = udp_peer().await;
    let head = request("OPTIONS", peer_addr, "z9hG4bKbig", "big").replace("Content-Length: 0\r\n\r\n", "");
    let tail = "Content-Length: 0\r\n\r\n";
    // As large as UDP allows, and past the maximum if UDP allows that.
    let size = (MAX_MESSAGE_BYTES + 1).min(MAX_UDP_PAYLOAD);
    let big = format!("{head}X-Filler: {}\r\n{tail}", "a".repeat(size - head.len() - tail.len() - "X-Filler: \r\n".len()));
    assert_eq!(big.len(), size);
    peer.send_to(big.as_bytes(), endpoint.local_addr()).await.unwrap();
    peer.send_to(request("OPTIONS", peer_addr, "z9hG4bKsmall", "small").as_bytes(), endpoint.local_addr()).await.unwrap();
    let mut call_ids = Vec::new();
    while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(500), incoming.recv()).await {
        call_ids.push(got.request.call_id().to_owned());
    }
    assert!(call_ids.contains(&"small".to_owned()), "{call_ids:?}");
    if size > MAX_MESSAGE_BYTES {
        assert!(!call_ids.contains(&"big".to_owned()), "{call_ids:?}");
    }
}

#[tokio::test]
async fn at_the_total_cap_a_new_connection_replaces_the_oldest_silent_one_never_one_in_use() {
    let limits = TcpLimits { max_connections: 2, ..TcpLimits::recommended() };
    let (endpoint, mut incoming) = endpoint(limits).await;
    let mut in_use = tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap();
    let peer = in_use.local_addr().unwrap();
    in_use.write_all(request("OPTIONS", peer, "z9hG4bKu1", "u1").replace("UDP", "TCP").as_bytes()).await.unwrap();
    next_incoming(&mut incoming).await;
    let mut silent = tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap();
    // The endpoint has taken `silent` once a third connection finds the cap reached.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut newest = tokio::net::TcpStream::connect(endpoint.local_addr()).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(5)).await.expect("the silent one made room");
    assert!(closed_within(&mut in_use, Duration::from_millis(200)).await.is_err(), "the one in use stays");
    let newest_addr = newest.local_addr().unwrap();
    newest.write_all(request("OPTIONS", newest_addr, "z9hG4bKn1", "n1").replace("UDP", "TCP").as_bytes()).await.unwrap();
    assert_eq!(next_incoming(&mut incoming).await.request.call_id(), "n1");
}
