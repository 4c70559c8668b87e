//! A private `nats-server -js` for one test: binds a random free port on 127.0.0.1 (reported in
//! its log, so there is no race for a port picked in advance), keeps its JetStream store in its
//! own temporary directory, and can be stopped and started again on the same port with the same
//! store (JetStream data survives). Killed when dropped. The system server on :4222 is never
//! used.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `$WSGATE_TEST_NATS_SERVER`, else `/usr/bin/nats-server`, else the
/// one on `PATH`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WSGATE_TEST_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let usr = PathBuf::from("/usr/bin/nats-server");
    if usr.exists() {
        usr
    } else {
        PathBuf::from("nats-server")
    }
}

/// A `nats-server` process of this test's own.
pub struct NatsServer {
    child: Option<Child>,
    port: Option<u16>,
    dir: tempfile::TempDir,
    starts: usize,
    /// The one user and password clients must log in with, if any.
    user: Option<(String, String)>,
    /// A gateway joining other clusters into a supercluster, if any (then without JetStream).
    gateway: Option<GatewayLink>,
}

/// A server's gateway: its cluster's name, where it listens, the clusters it reaches, and
/// the monitoring port its statistics are read on.
struct GatewayLink {
    name: String,
    port: u16,
    remotes: Vec<(String, u16)>,
    monitor: u16,
}

/// A port free on 127.0.0.1 now (for listeners that must know each other's before starting).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl NatsServer {
    /// Starts a server with JetStream on a random port and waits until it accepts clients.
    pub fn new() -> NatsServer {
        NatsServer::started(None)
    }

    /// Like [`new`](Self::new), accepting only clients that log in as `user` with `password`.
    pub fn with_user(user: &str, password: &str) -> NatsServer {
        NatsServer::started(Some((user.to_string(), password.to_string())))
    }

    /// A server of its own cluster `name` in a supercluster: its gateway listens on
    /// `gateway` and reaches the clusters `remotes` (name and gateway port), and its
    /// statistics are served on a monitoring port ([`monitor`](Self::monitor)). Without
    /// JetStream: a lone server of a cluster cannot run it once joined by a gateway.
    pub fn in_supercluster(name: &str, gateway: u16, remotes: &[(&str, u16)]) -> NatsServer {
        let gateway = GatewayLink {
            name: name.to_string(),
            port: gateway,
            remotes: remotes.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
            monitor: free_port(),
        };
        NatsServer::started_with(None, Some(gateway))
    }

    fn started(user: Option<(String, String)>) -> NatsServer {
        NatsServer::started_with(user, None)
    }

    fn started_with(user: Option<(String, String)>, gateway: Option<GatewayLink>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: None,
            dir: tempfile::tempdir().expect("temporary directory"),
            starts: 0,
            user,
            gateway,
        };
        server.start();
        server
    }

    /// A monitoring endpoint's JSON, e.g. `/gatewayz` (a supercluster server only).
    pub fn monitor(&self, path: &str) -> serde_json::Value {
        let port = self
            .gateway
            .as_ref()
            .expect("a supercluster server")
            .monitor;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let (status, body) = super::http_get(addr, path).expect("nats monitoring answers");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("nats monitoring JSON")
    }

    /// Writes the gateway's config file and returns its path.
    fn gateway_config(&self, gateway: &GatewayLink) -> PathBuf {
        let remotes: Vec<String> = gateway
            .remotes
            .iter()
            .map(|(name, port)| format!("{{name: \"{name}\", url: \"nats://127.0.0.1:{port}\"}}"))
            .collect();
        let text = format!(
            "gateway {{\n  name: \"{}\"\n  listen: \"127.0.0.1:{}\"\n  gateways: [{}]\n}}\n",
            gateway.name,
            gateway.port,
            remotes.join(", ")
        );
        let path = self.dir.path().join("gateway.conf");
        std::fs::write(&path, text).expect("writing the gateway config");
        path
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port.expect("started once")
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port())
    }

    /// Whether the process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("nats-{}.log", self.starts))
    }

    /// The current run's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the server if it is not running: on a random port the first time, on the same
    /// port and with the same JetStream store afterwards. Waits until it accepts clients.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        self.starts += 1;
        let store = self.dir.path().join("jetstream");
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path).unwrap();
        let port = self.port.map_or("-1".to_string(), |p| p.to_string());
        let mut command = Command::new(binary());
        if let Some((user, password)) = &self.user {
            command.args(["--user", user, "--pass", password]);
        }
        match &self.gateway {
            None => {
                command.args(["-js", "-sd"]).arg(&store);
            }
            Some(gateway) => {
                let config = self.gateway_config(gateway);
                command.arg("-c").arg(config);
                command.args(["-m", &gateway.monitor.to_string()]);
            }
        }
        let name = match &self.gateway {
            None => format!("wsgate-test-{}", std::process::id()),
            Some(g) => format!("wsgate-test-{}-{}", g.name, std::process::id()),
        };
        let child = command
            .args(["-a", "127.0.0.1", "-p", &port])
            .args(["-n", &name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("nats-server exited ({status}): {}", self.log());
            }
            let log = self.log();
            let listening = log
                .lines()
                .find_map(|line| line.split("Listening for client connections on ").nth(1))
                .and_then(|addr| addr.trim().rsplit(':').next())
                .and_then(|port| port.parse::<u16>().ok());
            if let (Some(port), true) = (listening, log.contains("Server is ready")) {
                if let Some(expected) = self.port {
                    assert_eq!(port, expected, "nats-server moved to another port");
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    self.port = Some(port);
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready within 20 s: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it to exit. The JetStream
    /// store stays for the next [`start`](Self::start).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Default for NatsServer {
    fn default() -> Self {
        NatsServer::new()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
