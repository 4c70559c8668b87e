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

    fn started(user: Option<(String, String)>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: None,
            dir: tempfile::tempdir().expect("temporary directory"),
            starts: 0,
            user,
        };
        server.start();
        server
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
        let child = command
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(&store)
            .args(["-n", &format!("wsgate-test-{}", std::process::id())])
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
