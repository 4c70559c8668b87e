//! A real HAProxy running the shipped `deploy/haproxy.cfg` in front of test nodes.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Client, Gateway};

/// The `haproxy` binary: `$WSGATE_TEST_HAPROXY`, else Debian's.
fn binary() -> std::path::PathBuf {
    std::env::var_os("WSGATE_TEST_HAPROXY").map_or_else(|| "/usr/sbin/haproxy".into(), Into::into)
}

/// A `haproxy` process of a test's own, running the shipped config in front of `nodes`.
pub struct HaProxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy in front of `nodes` (retrying on a port taken meanwhile).
    pub fn start(nodes: &[Gateway]) -> HaProxy {
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

    /// Opens a WebSocket connection to `path` through HAProxy.
    pub async fn connect(&self, path: &str) -> Client {
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
    let shipped = include_str!("../../deploy/haproxy.cfg");
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

impl HaProxy {
    /// `ws://127.0.0.1:<port>{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}
