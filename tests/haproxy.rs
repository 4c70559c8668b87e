//! Three nodes behind a real HAProxy running the shipped `deploy/haproxy.cfg`: clients connect
//! through it and spread over the nodes; a drained node closes its clients with 1001 and they
//! reconnect through HAProxy to the others.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{next_seen, Client, Gateway, Seen};

/// The `haproxy` binary: `$WSGATE_TEST_HAPROXY`, else Debian's.
fn binary() -> std::path::PathBuf {
    std::env::var_os("WSGATE_TEST_HAPROXY").map_or_else(|| "/usr/sbin/haproxy".into(), Into::into)
}

/// A `haproxy` process of this test's own, running the shipped config in front of `nodes`.
struct HaProxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    fn start(nodes: &[Gateway]) -> HaProxy {
        let mut last = String::new();
        for _ in 0..5 {
            match HaProxy::try_start(nodes) {
                Ok(proxy) => return proxy,
                Err(e) => last = e,
            }
        }
        panic!("haproxy did not start: {last}");
    }

    fn try_start(nodes: &[Gateway]) -> Result<HaProxy, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config_for(port, nodes)).map_err(|e| e.to_string())?;
        let log = dir.path().join("haproxy.log");
        let mut child = Command::new(binary())
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run haproxy (make test installs it): {e}"))?;
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("haproxy exited: {status}"));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(HaProxy {
                    child,
                    port,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        Err(format!("haproxy did not listen on {port}"))
    }

    async fn connect(&self, path: &str) -> Client {
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        let (client, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connecting through haproxy: {e}"));
        client
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped config with its `bind` on `port`, one `server` line per node (checked on the
/// node's admin listener), and `maxconn` within this machine's 20,000 open files per process.
fn config_for(port: u16, nodes: &[Gateway]) -> String {
    let shipped = include_str!("../deploy/haproxy.cfg");
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server ") {
            continue;
        }
        if trimmed.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            continue;
        }
        if trimmed.starts_with("maxconn ") {
            out.push_str("    maxconn 9000\n");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        out.contains("option httpchk GET /readyz"),
        "the shipped config checks /readyz"
    );
    for (i, node) in nodes.iter().enumerate() {
        out.push_str(&format!(
            "    server node{i} {} check port {}\n",
            node.addr,
            node.admin.port()
        ));
    }
    out
}

const PATH: &str = "/stream?streams=btcusdt@trade";
const CLIENTS: usize = 30;

/// The next trade, skipping anything else.
async fn next_trade(client: &mut Client) {
    loop {
        match next_seen(client, Duration::from_secs(20)).await {
            Seen::Json(value) if value["stream"] == "btcusdt@trade" => return,
            Seen::Json(_) => continue,
            other => panic!("expected a trade, got {other:?}"),
        }
    }
}

/// Reads until the connection closes (its close code) or `limit` passes with it open (None).
async fn close_within(mut client: Client, limit: Duration) -> Option<u16> {
    let closed = async {
        loop {
            match next_seen(&mut client, Duration::from_secs(60)).await {
                Seen::Json(_) => continue,
                Seen::Close(code, _) => return code,
                Seen::Ended => return 1006,
            }
        }
    };
    tokio::time::timeout(limit, closed).await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_node_hands_its_clients_to_the_others_through_haproxy() {
    let mut nodes: Vec<Gateway> = (0..3).map(|_| Gateway::start(&[])).collect();
    let proxy = HaProxy::start(&nodes);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = proxy.connect(PATH).await;
        next_trade(&mut client).await;
        clients.push(client);
    }
    let per_node: Vec<f64> = nodes
        .iter()
        .map(|n| n.metric("wsgate_connections "))
        .collect();
    assert_eq!(per_node.iter().sum::<f64>(), CLIENTS as f64, "{per_node:?}");
    assert!(per_node.iter().all(|&n| n >= 5.0), "spread: {per_node:?}");

    // Drain node 0: its clients are closed with 1001, the others keep streaming.
    let drained = per_node[0] as usize;
    nodes[0].signal("TERM");
    let watchers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(close_within(c, Duration::from_secs(5))))
        .collect();
    let mut closes = Vec::new();
    for watcher in watchers {
        closes.push(watcher.await.unwrap());
    }
    let closed: Vec<u16> = closes.iter().flatten().copied().collect();
    assert_eq!(closed.len(), drained, "closes: {closes:?}");
    assert!(closed.iter().all(|&c| c == 1001), "close codes: {closed:?}");

    // They reconnect at once through HAProxy, which sends them to the other nodes.
    let mut reconnected = Vec::new();
    for _ in 0..drained {
        let mut client = proxy.connect(PATH).await;
        next_trade(&mut client).await;
        reconnected.push(client);
    }
    assert!(nodes[0].wait_exit(Duration::from_secs(10)).is_some());
    // The clients that were never closed were dropped by the watchers: only the reconnected
    // ones remain, all on the two live nodes.
    common::wait_for("the reconnected clients on the live nodes", || {
        nodes[1].metric("wsgate_connections ") + nodes[2].metric("wsgate_connections ")
            == drained as f64
    });
    drop(reconnected);
}
