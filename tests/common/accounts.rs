//! Accounts for tests: API keys created through the operator's CLI, Binance's listen-key REST
//! calls from a chosen client address, and private connections from one.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Error as WsError;

use super::{Client, Gateway};

/// An API key and its HMAC secret.
#[derive(Debug, Clone)]
pub struct Key {
    pub key: String,
    pub secret: String,
}

/// Creates an HMAC key for `user` with `permissions` (`user-stream,trade`) through `gateway`'s
/// admin API.
pub fn create_key(gateway: &Gateway, user: &str, permissions: &str) -> Key {
    let created = gateway.cli(&[
        "key",
        "create",
        "--user",
        user,
        "--permissions",
        permissions,
    ]);
    assert!(created.ok, "{created:?}");
    let field = |label: &str| {
        created
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no `{label}` in {created:?}"))
    };
    Key {
        key: field("api key:"),
        secret: field("secret:"),
    }
}

/// `method /api/v3/userDataStream[?query]` with `api_key` in `X-MBX-APIKEY` and a form `body`,
/// from local address `from`: the status and JSON body.
pub fn user_data_stream(
    gateway: SocketAddr,
    from: &str,
    method: &str,
    api_key: Option<&str>,
    query: &str,
    body: &str,
) -> (u16, Value) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket
        .connect_timeout(&gateway.into(), Duration::from_secs(2))
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path = if query.is_empty() {
        "/api/v3/userDataStream".to_string()
    } else {
        format!("/api/v3/userDataStream?{query}")
    };
    let key_header = api_key
        .map(|k| format!("X-MBX-APIKEY: {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n{key_header}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    let body = serde_json::from_str(body).unwrap_or_else(|_| json!({ "raw": body }));
    (status, body)
}

/// A new listen key of `api_key`, created from 127.0.0.1.
pub fn listen_key(gateway: SocketAddr, api_key: &str) -> String {
    let (status, body) = user_data_stream(gateway, "127.0.0.1", "POST", Some(api_key), "", "");
    assert_eq!(status, 200, "{body}");
    body["listenKey"].as_str().expect("a listenKey").to_string()
}

/// Opens `ws://gateway{path}` from local address `from`: the client, or the refusal's HTTP
/// status and JSON body.
pub async fn connect_from(
    gateway: SocketAddr,
    from: &str,
    path: &str,
) -> Result<Client, (u16, Value)> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(gateway).await.unwrap();
    let url = format!("ws://{gateway}{path}");
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((client, _)) => Ok(client),
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("connecting to {path}: {e}"),
    }
}
