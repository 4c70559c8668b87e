//! Limits applied before the upgrade, against a real node: per-address caps and rates answered
//! with HTTP 429, the node limit exact under a storm, the handshake deadline against a
//! slowloris, URL and header sizes, the Origin allow-list, and client addresses behind a
//! trusted proxy.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{try_upgrade, try_upgrade_after, Gateway};

const STREAM: &str = "/ws/btcusdt@trade";

fn refused(gateway: &Gateway, reason: &str) -> f64 {
    gateway.metric(&format!(
        "wsgate_connections_refused_total{{reason=\"{reason}\"}}"
    ))
}

#[test]
fn a_thousand_connections_from_one_address_with_a_cap_of_a_hundred() {
    let gateway = Gateway::start(&["--max-connections-per-ip", "100"]);
    let mut open = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        let (stream, status) = try_upgrade(gateway.addr, None, STREAM, "");
        *statuses.entry(status).or_insert(0) += 1;
        if status == 101 {
            open.push(stream);
        }
    }
    assert_eq!(
        statuses,
        [(101, 100), (429, 900)].into_iter().collect(),
        "answers by status"
    );
    assert_eq!(refused(&gateway, "address_cap"), 900.0);
    assert_eq!(gateway.metric("wsgate_connections "), 100.0);
    // Another address is not held back by this one.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let (_other, status) = try_upgrade(gateway.addr, Some(other), STREAM, "");
    assert_eq!(status, 101);
    // A closed connection frees its place.
    drop(open.pop());
    common::wait_for("the closed connection to end", || {
        gateway.metric("wsgate_connections ") == 100.0
    });
    let (_again, status) = try_upgrade(gateway.addr, None, STREAM, "");
    assert_eq!(status, 101);
}

#[test]
fn connect_rate_per_address_is_a_token_bucket() {
    let gateway = Gateway::start(&["--connects-per-ip-per-sec", "1", "--connect-burst", "5"]);
    let statuses: Vec<u16> = (0..8)
        .map(|_| try_upgrade(gateway.addr, None, STREAM, "").1)
        .collect();
    assert_eq!(statuses, [101, 101, 101, 101, 101, 429, 429, 429]);
    assert_eq!(refused(&gateway, "address_rate"), 3.0);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(try_upgrade(gateway.addr, None, STREAM, "").1, 101);
}

#[test]
fn max_connections_is_exact_when_everyone_connects_at_once() {
    let gateway = Gateway::start(&["--max-connections", "50"]);
    let addr = gateway.addr;
    let answers: Vec<(TcpStream, u16)> = std::thread::scope(|scope| {
        let attempts: Vec<_> = (0..200u32)
            .map(|i| {
                let from: IpAddr = format!("127.0.{}.{}", 1 + i / 200, 1 + i % 200)
                    .parse()
                    .unwrap();
                scope.spawn(move || try_upgrade(addr, Some(from), STREAM, ""))
            })
            .collect();
        attempts.into_iter().map(|a| a.join().unwrap()).collect()
    });
    let accepted = answers.iter().filter(|(_, status)| *status == 101).count();
    let full = answers.iter().filter(|(_, status)| *status == 503).count();
    assert_eq!((accepted, full), (50, 150));
    assert_eq!(gateway.metric("wsgate_connections "), 50.0);
}

#[test]
fn a_handshake_trickled_byte_by_byte_is_cut_at_the_deadline() {
    let gateway = Gateway::start(&["--handshake-timeout", "1s"]);
    let mut slow = TcpStream::connect(gateway.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let request = format!(
        "GET {STREAM} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Padding: {}",
        "a".repeat(200)
    );
    let start = Instant::now();
    let mut cut = None;
    for byte in request.bytes() {
        if slow.write_all(&[byte]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match slow.read(&mut buf) {
            Ok(0) => {
                cut = Some(start.elapsed());
                break;
            }
            Ok(_) => {
                // An answer (408 or similar) before the close is fine.
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut = Some(start.elapsed());
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let cut = cut.expect("the trickling connection was never cut");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(4),
        "cut after {cut:?}"
    );
    // The node still serves.
    assert_eq!(try_upgrade(gateway.addr, None, STREAM, "").1, 101);
}

#[test]
fn oversized_urls_and_heads_are_refused() {
    let gateway = Gateway::start(&["--max-url-bytes", "1024", "--max-header-bytes", "8192"]);
    let long_path = format!("/stream?streams={}", "btcusdt@trade/".repeat(100));
    assert_eq!(try_upgrade(gateway.addr, None, &long_path, "").1, 414);
    assert_eq!(refused(&gateway, "url_too_long"), 1.0);
    let big_header = format!("X-Big: {}\r\n", "b".repeat(10_000));
    assert_eq!(try_upgrade(gateway.addr, None, STREAM, &big_header).1, 431);
    assert_eq!(try_upgrade(gateway.addr, None, STREAM, "").1, 101);
}

#[test]
fn origins_outside_the_allow_list_are_refused() {
    let gateway = Gateway::start(&["--allowed-origins", "https://app.exchange.test"]);
    let evil = "Origin: https://evil.test\r\n";
    assert_eq!(try_upgrade(gateway.addr, None, STREAM, evil).1, 403);
    assert_eq!(refused(&gateway, "origin"), 1.0);
    let good = "Origin: https://app.exchange.test\r\n";
    assert_eq!(try_upgrade(gateway.addr, None, STREAM, good).1, 101);
    assert_eq!(try_upgrade(gateway.addr, None, STREAM, "").1, 101);
}

#[test]
fn limits_see_the_client_behind_a_trusted_proxy() {
    let gateway = Gateway::start(&[
        "--max-connections-per-ip",
        "1",
        "--trusted-proxies",
        "127.0.0.9",
    ]);
    let proxy: IpAddr = "127.0.0.9".parse().unwrap();
    let client = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let (_a, first) = try_upgrade(gateway.addr, Some(proxy), STREAM, &client("198.51.100.1"));
    let (_b, second) = try_upgrade(gateway.addr, Some(proxy), STREAM, &client("198.51.100.2"));
    let (_c, again) = try_upgrade(gateway.addr, Some(proxy), STREAM, &client("198.51.100.1"));
    assert_eq!((first, second, again), (101, 101, 429));
    // From an address that is not a trusted proxy, the header is not believed.
    let untrusted: IpAddr = "127.0.0.10".parse().unwrap();
    let (_d, direct) = try_upgrade(
        gateway.addr,
        Some(untrusted),
        STREAM,
        &client("198.51.100.3"),
    );
    let (_e, spoofed) = try_upgrade(
        gateway.addr,
        Some(untrusted),
        STREAM,
        &client("198.51.100.4"),
    );
    assert_eq!((direct, spoofed), (101, 429));
}

/// A PROXY protocol v2 header (as HAProxy's `send-proxy-v2` writes it) naming `client`.
fn proxy_header(client: &str) -> Vec<u8> {
    let addresses = (
        format!("{client}:40000")
            .parse::<std::net::SocketAddr>()
            .unwrap(),
        "127.0.0.1:443".parse::<std::net::SocketAddr>().unwrap(),
    );
    let version_command = ppp::v2::Version::Two as u8 | ppp::v2::Command::Proxy as u8;
    ppp::v2::Builder::with_addresses(version_command, ppp::v2::Protocol::Stream, addresses)
        .build()
        .unwrap()
}

#[test]
fn limits_see_the_client_a_proxy_protocol_header_names() {
    let gateway = Gateway::start(&[
        "--max-connections-per-ip",
        "1",
        "--trusted-proxies",
        "127.0.0.9",
        "--proxy-protocol",
    ]);
    let proxy: IpAddr = "127.0.0.9".parse().unwrap();
    let through = |client: &str| {
        try_upgrade_after(gateway.addr, Some(proxy), &proxy_header(client), STREAM, "")
    };
    let (_a, first) = through("198.51.100.1");
    let (_b, second) = through("198.51.100.2");
    let (_c, again) = through("198.51.100.1");
    assert_eq!((first, second, again), (101, 101, 429));
    // The proxy without its header is cut before HTTP.
    let (_d, bare) = try_upgrade(gateway.addr, Some(proxy), STREAM, "");
    assert_eq!(bare, 0);
    assert_eq!(refused(&gateway, "proxy_protocol"), 1.0);
    // Clients that connect directly send no header.
    let direct: IpAddr = "127.0.0.10".parse().unwrap();
    assert_eq!(try_upgrade(gateway.addr, Some(direct), STREAM, "").1, 101);
}
