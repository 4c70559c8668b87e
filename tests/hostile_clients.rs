//! Clients that break the rules, against a real node: one that asks and never reads, one that
//! sends pongs instead of answering pings, and close codes no endpoint may send. Each is cut
//! off within its bounds while the node keeps serving everyone else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{try_upgrade, upgrade_on, Gateway};
use futures_util::StreamExt;

/// A final, masked client frame.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    wsgate::ws::frame::masked_client_frame(opcode, true, payload)
}

/// Reads server frames until a close frame; returns its code (None: the stream ended first).
fn read_close_code(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(limit)).unwrap();
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).ok()?;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).ok()?;
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).ok()?;
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).ok()?;
        if head[0] & 0x0f == 0x8 {
            return Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

#[test]
fn a_client_that_asks_and_never_reads_is_closed_within_its_budget() {
    let gateway = Gateway::start(&[
        "--messages-per-sec",
        "400",
        "--reply-bytes",
        "65536",
        "--outbox-bytes",
        "262144",
        "--accept-unknown-streams",
    ]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A well-behaved client streaming trades meanwhile.
    let watching = Arc::new(AtomicBool::new(true));
    let received = {
        let url = gateway.url("/ws/btcusdt@trade");
        let watching = Arc::clone(&watching);
        runtime.spawn(async move {
            let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let mut trades = 0usize;
            while watching.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), client.next()).await {
                    Ok(Some(Ok(message))) if message.is_text() => trades += 1,
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(other) => panic!("the streaming client was cut off: {other:?}"),
                }
            }
            trades
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = gateway.rss_bytes();

    // The attacker: a tiny receive window it never drains, a thousand streams, and a request
    // for their list again and again (each reply some 20 KB).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&gateway.addr.into()).unwrap();
    let mut attacker: TcpStream = socket.into();
    assert_eq!(upgrade_on(&mut attacker, &[], "/ws", "").0, 101);
    let streams: Vec<String> = (0..1000).map(|i| format!("\"sym{i}usdt@trade\"")).collect();
    let subscribe = format!(
        r#"{{"method":"SUBSCRIBE","params":[{}],"id":1}}"#,
        streams.join(",")
    );
    attacker
        .write_all(&masked(0x1, subscribe.as_bytes()))
        .unwrap();
    let request = masked(0x1, br#"{"method":"LIST_SUBSCRIPTIONS","id":2}"#);
    let start = Instant::now();
    let mut peak = rss_before;
    let mut sent = 0usize;
    let closed_after = loop {
        if attacker.write_all(&request).is_err() {
            break start.elapsed();
        }
        sent += 1;
        if sent.is_multiple_of(20) {
            peak = peak.max(gateway.rss_bytes());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still open after {sent} requests; node RSS grew {} MiB",
            (peak - rss_before) >> 20
        );
        // At the limit: 400 messages a second.
        std::thread::sleep(Duration::from_micros(2500));
    };
    peak = peak.max(gateway.rss_bytes());
    let growth = peak.saturating_sub(rss_before);
    assert!(
        growth < 24 << 20,
        "node RSS grew {} MiB while the client asked {sent} times",
        growth >> 20
    );
    assert!(
        closed_after < Duration::from_secs(10),
        "closed after {closed_after:?}"
    );
    assert_eq!(gateway.metric("wsgate_closes_total{code=\"4100\"}"), 1.0);

    std::thread::sleep(Duration::from_secs(1));
    watching.store(false, Ordering::Relaxed);
    let trades = runtime.block_on(received).unwrap();
    assert!(trades > 0, "the streaming client received nothing");
}

#[test]
fn pongs_without_the_pings_payload_do_not_keep_a_client_alive() {
    let gateway = Gateway::start(&["--ping-interval", "500ms", "--pong-timeout", "1500ms"]);
    let (mut stream, status) = try_upgrade(gateway.addr, None, "/ws/btcusdt@trade", "");
    assert_eq!(status, 101);
    let mut writer = stream.try_clone().unwrap();
    let pongs = std::thread::spawn(move || {
        // Unsolicited pongs, as some clients send on a timer, and never an answer to a ping.
        while writer.write_all(&masked(0xA, b"")).is_ok() {
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let start = Instant::now();
    let code = read_close_code(&mut stream, Duration::from_secs(8));
    let elapsed = start.elapsed();
    assert!(
        code.is_some() && elapsed < Duration::from_secs(5),
        "not closed in time ({code:?} after {elapsed:?})"
    );
    drop(stream);
    pongs.join().unwrap();
}

#[test]
fn a_pong_with_the_pings_payload_keeps_the_client() {
    let gateway = Gateway::start(&["--ping-interval", "300ms", "--pong-timeout", "900ms"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // tungstenite answers every ping with its payload.
        let mut client = gateway.connect("/ws/btcusdt@trade").await;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(100), client.next()).await {
                Ok(Some(Ok(message))) => assert!(!message.is_close(), "closed: {message:?}"),
                Ok(other) => panic!("connection ended: {other:?}"),
                Err(_) => {}
            }
        }
    });
}

#[test]
fn close_codes_are_checked_and_counted_in_bounded_labels() {
    let gateway = Gateway::start(&[]);
    for (sent, answered) in [(1005u16, 1002u16), (999, 1002), (2999, 1002), (4321, 4321)] {
        let (mut stream, status) = try_upgrade(gateway.addr, None, "/ws/btcusdt@trade", "");
        assert_eq!(status, 101);
        stream.write_all(&masked(0x8, &sent.to_be_bytes())).unwrap();
        let code = read_close_code(&mut stream, Duration::from_secs(5));
        assert_eq!(code, Some(answered), "answer to close code {sent}");
    }
    let (_, metrics) = gateway.http_get("/metrics").unwrap();
    assert!(
        metrics.contains("wsgate_closes_total{code=\"4xxx\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("code=\"4321\""));
    assert!(!metrics.contains("code=\"999\""));
}
