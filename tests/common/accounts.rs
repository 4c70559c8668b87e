//! Accounts for tests: API keys created through the operator's CLI, Binance's listen-key REST
//! calls from a chosen client address, and private connections from one.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Client, Gateway, Seen};

/// An API key and its HMAC secret.
#[derive(Debug, Clone)]
pub struct Key {
    pub key: String,
    pub secret: String,
}

/// The value after `label` on its line of the CLI's output.
fn cli_field(output: &super::CliOutput, label: &str) -> String {
    output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` in {output:?}"))
}

/// `wsgate key create` for `user` with `permissions` and `extra` arguments; must succeed.
fn cli_create(
    gateway: &Gateway,
    user: &str,
    permissions: &str,
    extra: &[&str],
) -> super::CliOutput {
    let mut args = vec![
        "key",
        "create",
        "--user",
        user,
        "--permissions",
        permissions,
    ];
    args.extend_from_slice(extra);
    let created = gateway.cli(&args);
    assert!(created.ok, "{created:?}");
    created
}

/// Creates an HMAC key for `user` with `permissions` (`user-stream,trade`) through `gateway`'s
/// admin API.
pub fn create_key(gateway: &Gateway, user: &str, permissions: &str) -> Key {
    let created = cli_create(gateway, user, permissions, &[]);
    Key {
        key: cli_field(&created, "api key:"),
        secret: cli_field(&created, "secret:"),
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
    let header = api_key.map(|key| ("X-MBX-APIKEY", key));
    form_request(
        gateway,
        from,
        method,
        "/api/v3/userDataStream",
        header,
        query,
        body,
    )
}

/// `method path[?query]` with the header `header` (if any) and a form `body`, from local address
/// `from`: the status and JSON body.
pub fn form_request(
    gateway: SocketAddr,
    from: &str,
    method: &str,
    path: &str,
    header: Option<(&str, &str)>,
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
    let target = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let header = header
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n{header}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (status, body) = super::split_response(&response);
    let body = serde_json::from_str(body).unwrap_or_else(|_| json!({ "raw": body }));
    (status, body)
}

/// The hex HMAC-SHA256 of `payload` with `secret`.
pub fn hmac_hex(secret: &str, payload: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
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

pub const SUBJECT: &str = "account.events";

/// Account events from `nats` (subject [`SUBJECT`]) mapped by `binance_user_data` to the private topic `userData`.
pub fn config(nats: &str) -> Value {
    json!({
        "vars": {},
        "datasource": [{"version": 1, "type": "nats", "name": "accounts",
                        "properties": {"servers": [nats], "subjects": [SUBJECT],
                                       "reconnect_time_wait_ms": 100}}],
        "topics": [{"version": 1, "topic": "userData", "auth": "private"}],
        "routes": [{"id": "user-data", "version": 1, "data_source": "accounts",
                    "upstream": [SUBJECT],
                    "mappings": [{"mapper": "binance_user_data", "fanout_topic": "user.data",
                                  "ws_topic": "userData"}]}]
    })
}

pub fn balance(asset: &str, n: u64) -> Value {
    json!({"e": "balanceUpdate", "E": n, "a": asset, "d": "1.00000000", "T": n})
}

/// Publishes account events upstream: `(user or none, event)`.
pub async fn publish(nats: &str, events: &[(Option<&str>, Value)]) {
    let client = async_nats::connect(nats).await.unwrap();
    for (user, event) in events {
        let envelope = match user {
            Some(user) => json!({"user_id": user, "event": event}),
            None => json!({"event": event}),
        };
        client
            .publish(SUBJECT, envelope.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

/// What `client` sees next, or `None` when `limit` passes first.
pub async fn next_within(client: &mut Client, limit: Duration) -> Option<Seen> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, client.next())
            .await
            .ok()?;
        return Some(match message {
            Some(Ok(Message::Text(text))) => Seen::Json(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                let frame = frame.expect("a close code");
                Seen::Close(u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => Seen::Ended,
        });
    }
}

/// The JSON messages `client` receives until `limit` passes with nothing new.
pub async fn drain(client: &mut Client, limit: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    while let Some(Seen::Json(value)) = next_within(client, limit).await {
        seen.push(value);
    }
    seen
}

/// Creates an Ed25519 key for `user` with `permissions` from a fixed seed; returns the API key
/// and the signing key.
pub fn create_ed25519_key(
    gateway: &Gateway,
    user: &str,
    permissions: &str,
    seed: u8,
) -> (String, ed25519_dalek::SigningKey) {
    use base64::Engine;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let public =
        base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pub");
    std::fs::write(&path, public).unwrap();
    let path = path.to_str().unwrap();
    let created = cli_create(gateway, user, permissions, &["--ed25519-public-key", path]);
    let key = cli_field(&created, "api key:");
    (key, signing)
}

/// How a WebSocket API request is signed.
pub enum Signer<'a> {
    /// HMAC-SHA256 with this secret, hex.
    Hmac(&'a str),
    /// Ed25519, base64.
    Ed25519(&'a ed25519_dalek::SigningKey),
}

/// `params` with `signature` added: over every param, sorted by name, `k=v` joined by `&`.
pub fn sign(mut params: Value, signer: Signer<'_>) -> Value {
    use base64::Engine;
    let map = params.as_object().unwrap();
    let mut pairs: Vec<(String, String)> = map
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    pairs.sort();
    let payload = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature = match signer {
        Signer::Hmac(secret) => hmac_hex(secret, &payload),
        Signer::Ed25519(key) => {
            use ed25519_dalek::Signer as _;
            base64::engine::general_purpose::STANDARD
                .encode(key.sign(payload.as_bytes()).to_bytes())
        }
    };
    params["signature"] = json!(signature);
    params
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Publishes a marker event for `user` until `client` receives one, so the route and the bus
/// subscriptions are known to be in place; what arrived meanwhile is drained.
pub async fn until_flowing(nats: &str, user: &str, client: &mut Client) {
    for _ in 0..30 {
        publish(nats, &[(Some(user), balance("WARM", 0))]).await;
        if let Some(Seen::Json(_)) = next_within(client, Duration::from_millis(300)).await {
            drain(client, Duration::from_millis(300)).await;
            return;
        }
    }
    panic!("no private event reached {user}");
}
