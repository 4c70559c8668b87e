//! A private Kafka-protocol broker for one test: `tansu` (a Kafka-compatible broker) with its
//! in-memory storage engine, on a free TCP port of the loopback interface. Killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `tansu` binary: `$WSGATE_TEST_TANSU`, else `~/.cargo/bin/tansu`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WSGATE_TEST_TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cargo/bin/tansu")
}

/// Whether the `tansu` binary is installed.
pub fn available() -> bool {
    binary().is_file()
}

/// A `tansu broker` process of this test's own.
pub struct KafkaBroker {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl KafkaBroker {
    /// Starts a broker on a free port and waits until it accepts connections (retrying on
    /// another port if the chosen one was taken meanwhile).
    pub fn new() -> KafkaBroker {
        let mut last = String::new();
        for _ in 0..5 {
            match KafkaBroker::try_start() {
                Ok(broker) => return broker,
                Err(e) => last = e,
            }
        }
        panic!("tansu broker did not start: {last}");
    }

    fn try_start() -> Result<KafkaBroker, String> {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().expect("temporary file");
        let child = Command::new(binary())
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .stdin(Stdio::null())
            .stdout(log.reopen().map_err(|e| e.to_string())?)
            .stderr(log.reopen().map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
        let mut broker = KafkaBroker { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(format!("tansu exited ({status}): {}", broker.log()));
            }
            if TcpStream::connect_timeout(&broker.addr(), Duration::from_millis(200)).is_ok() {
                return Ok(broker);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu did not listen on {} within 15 s: {}",
                    broker.addr(),
                    broker.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `bootstrap.servers` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the broker has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let output = Command::new(binary())
            .args(["topic", "create", topic, "--partitions"])
            .arg(partitions.to_string())
            .arg("--broker")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
        assert!(
            output.status.success(),
            "tansu topic create {topic} failed: {}{}\nbroker log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Default for KafkaBroker {
    fn default() -> Self {
        KafkaBroker::new()
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}
