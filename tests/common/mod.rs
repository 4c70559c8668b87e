//! Test harness: starts a real `wsgate` process on free ports and talks to it with a real
//! WebSocket client (tokio-tungstenite).

#![allow(dead_code)]

pub mod accounts;
pub mod haproxy;
pub mod kafka;
pub mod nats;
pub mod proxy;
pub mod redis;
pub mod scripts;
pub mod trades;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream as TokioTcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client connection to the gateway.
pub type Client = WebSocketStream<MaybeTlsStream<TokioTcpStream>>;

/// Where the test mappers are: `make mappers` puts them in `target/mappers`.
pub fn mappers_dir() -> PathBuf {
    let dir = std::env::var_os("WSGATE_TEST_MAPPERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/mappers"));
    assert!(
        dir.join("binance_trade.wasm").exists(),
        "no mappers in {}: run `make mappers` (or `make test`) first",
        dir.display()
    );
    dir
}

/// The shipped embedded config.
pub fn shipped_config() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/gateway.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Removes every topic's `rate` and `burst`: for workloads past the shipped config's limits
/// (1,000 trades a second per connection) whose tests are not about them.
pub fn without_rate_limits(config: &mut Value) {
    for topic in config["topics"].as_array_mut().unwrap() {
        let topic = topic.as_object_mut().unwrap();
        topic.remove("rate");
        topic.remove("burst");
    }
}

/// A gateway process, killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    /// Client address.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway with the shipped config and `args`.
    pub fn start(args: &[&str]) -> Gateway {
        Gateway::start_with(shipped_config(), args)
    }

    /// Starts a gateway with `config` and extra `args`, and waits until it is ready.
    pub fn start_with(config: Value, args: &[&str]) -> Gateway {
        Gateway::start_in(config, args, &mappers_dir())
    }

    /// A cluster node `id` with `config`, its config store at `redis` (keys under `cluster:`)
    /// and its bus at `nats`.
    pub fn cluster_node(config: &Value, redis: &str, nats: &str, id: &str) -> Gateway {
        Gateway::cluster_node_with(config, redis, nats, id, &[])
    }

    /// Like [`cluster_node`](Self::cluster_node), with `extra` arguments.
    pub fn cluster_node_with(
        config: &Value,
        redis: &str,
        nats: &str,
        id: &str,
        extra: &[&str],
    ) -> Gateway {
        let mut args = vec![
            "--redis",
            redis,
            "--redis-prefix",
            "cluster:",
            "--nats",
            nats,
            "--node-id",
            id,
        ];
        args.extend_from_slice(extra);
        Gateway::start_with(config.clone(), &args)
    }

    /// Like [`start_with`](Self::start_with), loading mappers from `mappers`.
    pub fn start_in(config: Value, args: &[&str], mappers: &std::path::Path) -> Gateway {
        // An HTTPS admin listener is not probed over plain HTTP: its ready line is enough.
        let probe_admin = !args.contains(&"--admin-tls-cert");
        Gateway::spawn(config, args, mappers, probe_admin)
    }

    /// Like [`start_with`](Self::start_with), waiting only for the node's listeners, not for
    /// `/readyz` to answer 200 (for a node that is meant to be unready).
    pub fn start_unready(config: Value, args: &[&str]) -> Gateway {
        Gateway::spawn(config, args, &mappers_dir(), false)
    }

    fn spawn(
        config: Value,
        args: &[&str],
        mappers: &std::path::Path,
        probe_admin: bool,
    ) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        // Port 0: the gateway binds free ports and reports them in its ready line, so no port
        // picked here can be taken by someone else before the gateway binds it.
        let unbound: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let log = std::fs::File::create(dir.path().join("wsgate.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .arg("serve")
            .arg("--listen")
            .arg(unbound.to_string())
            .arg("--admin-listen")
            .arg(unbound.to_string())
            .arg("--config")
            .arg(&config_path)
            .arg("--mappers-dir")
            .arg(mappers)
            .args(args)
            .env("WSGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting wsgate");
        let mut gateway = Gateway {
            child: Some(child),
            addr: unbound,
            admin: unbound,
            _dir: dir,
        };
        gateway.wait_ready(Duration::from_secs(60), probe_admin);
        gateway
    }

    fn wait_ready(&mut self, limit: Duration, probe_admin: bool) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wsgate exited early ({status}):\n{}", self.log());
            }
            if let Some((addr, admin)) = ready_addresses(&self.log()) {
                self.addr = addr;
                self.admin = admin;
                let ready = !probe_admin || self.http_get("/readyz").is_ok_and(|(s, _)| s == 200);
                if ready {
                    return;
                }
            }
            assert!(
                start.elapsed() < limit,
                "wsgate not ready in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("wsgate.log")).unwrap_or_default()
    }

    /// `ws://host:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Opens a WebSocket connection to `path`.
    /// A client of `path` whose socket takes at most about `receive_buffer` bytes before the
    /// gateway has to wait for it to read.
    pub async fn connect_small(&self, path: &str, receive_buffer: usize) -> Client {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(receive_buffer).unwrap();
        socket.connect(&self.addr.into()).unwrap();
        socket.set_nonblocking(true).unwrap();
        let tcp = tokio::net::TcpStream::from_std(socket.into()).unwrap();
        let (client, _) = tokio_tungstenite::client_async(
            self.url(path),
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        )
        .await
        .unwrap();
        client
    }

    pub async fn connect(&self, path: &str) -> Client {
        let (client, _) = tokio_tungstenite::connect_async(self.url(path))
            .await
            .unwrap_or_else(|e| panic!("connecting to {path}: {e}"));
        client
    }

    /// GET on the admin listener: status and body.
    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.admin, path)
    }

    /// Runs the `wsgate` CLI against this gateway's admin API (token `TEST_TOKEN`).
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(self.admin, args)
    }

    /// `wsgate config apply` of `config` through this gateway; must succeed.
    pub fn apply_config(&self, config: &Value) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let out = self.cli(&["config", "apply", file.to_str().unwrap()]);
        assert!(out.ok, "{out:?}");
    }

    /// The value of a metric line starting with `prefix` (e.g. `wsgate_connections `).
    pub fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").expect("metrics");
        metric_value(&body, prefix)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The process's resident memory, in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Waits for the process to exit; returns how long it took, or None on timeout.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The admin token test gateways are started with (pass `--admin-token` explicitly).
pub const TEST_TOKEN: &str = "test-token";

/// What a CLI run printed, and whether it succeeded.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit status was zero.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs the `wsgate` CLI against the admin API at `admin` with `TEST_TOKEN`.
pub fn run_cli(admin: SocketAddr, args: &[&str]) -> CliOutput {
    let output = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(args)
        .env("WSGATE_ADMIN_URL", format!("http://{admin}"))
        .env("WSGATE_ADMIN_TOKEN", TEST_TOKEN)
        .env("WSGATE_OPERATOR", "tester")
        .output()
        .expect("running the wsgate CLI");
    CliOutput {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The client and admin addresses from the gateway's `wsgate node ready` log line.
pub fn ready_addresses(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = log.lines().find(|l| l.contains("wsgate node ready"))?;
    let field = |name: &str| -> Option<SocketAddr> {
        let start = line.find(name)? + name.len();
        line[start..].split_whitespace().next()?.parse().ok()
    };
    Some((field(" listen=")?, field(" admin=")?))
}

/// The sum of every sample whose line starts with `prefix` (labels included in the prefix).
pub fn metric_value(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A plain HTTP/1.0 GET.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, path, "")
}

/// A plain HTTP/1.0 GET with a bearer token.
pub fn http_get_auth(addr: SocketAddr, path: &str, token: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, path, &format!("Authorization: Bearer {token}\r\n"))
}

/// `method path` with a JSON `body` on the admin API at `admin` (token `TEST_TOKEN`), waiting up
/// to a minute for the answer (a push compiles): status and body.
pub fn admin_send(admin: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.to_string();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {admin}\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (status, body) = split_response(&response);
    (status, body.to_string())
}

fn http_request(addr: SocketAddr, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (status, body) = split_response(&response);
    Ok((status, body.to_string()))
}

/// The status and body of a raw HTTP/1.x response.
pub fn split_response(response: &str) -> (u16, &str) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

/// What a client saw next, ignoring pings and pongs.
#[derive(Debug)]
pub enum Seen {
    /// A JSON text message.
    Json(Value),
    /// A close frame with its code and reason.
    Close(u16, String),
    /// End of stream without a close frame.
    Ended,
}

/// The next text message or close, within `limit`.
pub async fn next_seen(client: &mut Client, limit: Duration) -> Seen {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, client.next())
            .await
            .expect("timed out waiting for a message");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Seen::Json(serde_json::from_str(&text).expect("gateway sent JSON"))
            }
            Some(Ok(Message::Close(frame))) => {
                return match frame {
                    Some(f) => Seen::Close(u16::from(f.code), f.reason.to_string()),
                    None => Seen::Close(1005, String::new()),
                }
            }
            Some(Ok(Message::Binary(_))) => panic!("gateway sent a binary frame"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Seen::Ended,
        }
    }
}

/// The next JSON message within `limit`; panics on close.
pub async fn next_json(client: &mut Client, limit: Duration) -> Value {
    match next_seen(client, limit).await {
        Seen::Json(value) => value,
        other => panic!("expected a JSON message, got {other:?}"),
    }
}

/// The next message that is a reply (has `id`), skipping stream data.
pub async fn next_reply(client: &mut Client) -> Value {
    loop {
        let value = next_json(client, Duration::from_secs(10)).await;
        if value.get("id").is_some() || value.get("error").is_some() {
            return value;
        }
    }
}

/// Every message received within `window`; panics if the connection ends.
pub async fn during(client: &mut Client, window: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + window;
    let longer = window + Duration::from_secs(10);
    let mut got = Vec::new();
    while let Ok(seen) = tokio::time::timeout_at(deadline, next_seen(client, longer)).await {
        match seen {
            Seen::Json(value) => got.push(value),
            other => panic!("connection ended: {other:?}"),
        }
    }
    got
}

/// The keys of a JSON object, in order.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Sends a text message.
pub async fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.expect("sending");
}

/// Sends a request and returns its reply.
pub async fn request(client: &mut Client, request: Value) -> Value {
    send_text(client, &request.to_string()).await;
    next_reply(client).await
}

/// Waits for the close frame (skipping data), returning code and reason.
pub async fn expect_close(client: &mut Client, limit: Duration) -> (u16, String) {
    loop {
        match next_seen(client, limit).await {
            Seen::Json(_) => continue,
            Seen::Close(code, reason) => return (code, reason),
            Seen::Ended => panic!("connection ended without a close frame"),
        }
    }
}

/// Close code helper for readability.
pub fn code(close: CloseCode) -> u16 {
    u16::from(close)
}

/// Messages of `stream` received within `limit`, at least `count` of them (combined format).
pub async fn collect_stream(
    client: &mut Client,
    stream: &str,
    count: usize,
    limit: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {count} `{stream}` messages in time",
            got.len()
        );
        let value = next_json(client, left).await;
        if value["stream"] == stream {
            got.push(value["data"].clone());
        }
    }
    got
}

/// A WebSocket client on a bare socket that never answers anything: for keepalive tests.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Performs the upgrade handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> RawClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        let (_, head) = upgrade_on(&mut stream, &[], path, "");
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake refused: {head}"
        );
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong accept key: {head}"
        );
        RawClient { stream }
    }

    /// Reads frames, never replying, until a close frame; returns pings seen and the close code.
    pub fn read_until_close(&mut self, limit: Duration) -> (usize, u16) {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let mut pings = 0;
        loop {
            let mut head = [0u8; 2];
            self.stream
                .read_exact(&mut head)
                .expect("frame header before the close");
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut ext = [0u8; 2];
                self.stream.read_exact(&mut ext).unwrap();
                len = u64::from(u16::from_be_bytes(ext));
            } else if len == 127 {
                let mut ext = [0u8; 8];
                self.stream.read_exact(&mut ext).unwrap();
                len = u64::from_be_bytes(ext);
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).unwrap();
            match head[0] & 0x0f {
                0x9 => pings += 1,
                0x8 => return (pings, u16::from_be_bytes([payload[0], payload[1]])),
                _ => {}
            }
        }
    }
}

/// The Python with the client libraries: `WSGATE_TEST_PYTHON` (set by `make test`).
pub fn python() -> PathBuf {
    let python = std::env::var_os("WSGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/clientenv/bin/python")
        });
    assert!(
        python.exists(),
        "{} is missing: run `make test` (it installs tests/clients/requirements.txt)",
        python.display()
    );
    python
}

/// Sends a WebSocket upgrade request for `path` with `extra` header lines (each ending in
/// `\r\n`) on a new connection from `from` (any 127.x address; `None`: the default); returns
/// the connection and the answer's status.
pub fn try_upgrade(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    path: &str,
    extra: &str,
) -> (TcpStream, u16) {
    try_upgrade_after(addr, from, &[], path, extra)
}

/// Like [`try_upgrade`], with `prefix` sent before the request (e.g. a PROXY protocol header);
/// status 0 when the node closed the connection without an answer.
pub fn try_upgrade_after(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    prefix: &[u8],
    path: &str,
    extra: &str,
) -> (TcpStream, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(from) = from {
        socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    }
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let status = upgrade_on(&mut stream, prefix, path, extra).0;
    (stream, status)
}

/// Sends `prefix` and an upgrade request for `path` (with `extra` header lines, each ending in
/// `\r\n`) on `stream`, and reads the answer's head: its status (0 when the node closed without
/// an answer) and the head itself.
pub fn upgrade_on(stream: &mut TcpStream, prefix: &[u8], path: &str, extra: &str) -> (u16, String) {
    stream.write_all(prefix).unwrap();
    // A node that refuses the prefix may close before the request is written.
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: wsgate\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = if head.is_empty() {
        0
    } else {
        head.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {head:?}"))
    };
    (status, head)
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after 20 s.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `wsgate serve` with `config`: exits with an error naming the offending property.
pub fn assert_start_refused(config: Value, property: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&path)
        .arg("--mappers-dir")
        .arg(mappers_dir())
        .env("WSGATE_LOG", "info")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running wsgate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with a bad config");
    assert!(
        stderr.contains(&format!("properties.{property}:")),
        "the error does not name properties.{property}:\n{stderr}"
    );
}
