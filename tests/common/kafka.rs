//! A private Kafka-protocol broker for one test: `tansu` (a Kafka-compatible broker) on a free
//! TCP port of the loopback interface, in its own temporary directory. Killed when dropped.
//!
//! [`KafkaBroker::new`] keeps everything in memory (`memory://`), lost when it stops.
//! [`KafkaBroker::persistent`] keeps topics, records, groups and committed offsets in an SQLite
//! database of its directory (`sqlite://tansu.db`, a path tansu resolves against its working
//! directory), so it can be stopped ([`kill`](KafkaBroker::kill),
//! [`terminate`](KafkaBroker::terminate)) and [`start`](KafkaBroker::start)ed again on the same
//! port with everything it had.

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

/// The storage engine of a broker.
const MEMORY: &str = "memory://tansu/";
/// The persistent one: an SQLite database (tansu's `libsql` feature) that tansu places relative
/// to its working directory, the broker's temporary directory.
const SQLITE: &str = "sqlite://tansu.db";

/// A `tansu broker` process of this test's own.
pub struct KafkaBroker {
    child: Option<Child>,
    port: u16,
    storage: &'static str,
    dir: tempfile::TempDir,
    starts: usize,
}

impl KafkaBroker {
    /// Starts a broker with in-memory storage on a free port and waits until it accepts
    /// connections.
    pub fn new() -> KafkaBroker {
        KafkaBroker::first_start(MEMORY)
    }

    /// Starts a broker whose storage survives a restart (an SQLite database in its temporary
    /// directory) on a free port, and waits until it accepts connections.
    pub fn persistent() -> KafkaBroker {
        KafkaBroker::first_start(SQLITE)
    }

    /// Starts on a free port, retrying on another one if the chosen one was taken meanwhile.
    fn first_start(storage: &'static str) -> KafkaBroker {
        let mut last = String::new();
        for _ in 0..5 {
            let mut broker = KafkaBroker {
                child: None,
                port: free_port(),
                storage,
                dir: tempfile::tempdir().expect("temporary directory"),
                starts: 0,
            };
            match broker.try_start() {
                Ok(()) => return broker,
                Err(e) => last = e,
            }
        }
        panic!("tansu broker did not start: {last}");
    }

    /// Starts the broker again after [`kill`](Self::kill) or [`terminate`](Self::terminate):
    /// same port, same storage. Waits until it accepts connections; does nothing if it runs.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        // The port was this broker's a moment ago; should its last connections still hold it,
        // try again a little later.
        let mut last = String::new();
        for _ in 0..10 {
            match self.try_start() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("tansu broker did not restart on port {}: {last}", self.port);
    }

    fn try_start(&mut self) -> Result<(), String> {
        self.starts += 1;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let child = Command::new(binary())
            .current_dir(self.dir.path())
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg(self.storage)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("tansu exited ({status}): {}", self.log()));
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "tansu did not listen on {} within 15 s: {}",
                    self.addr(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL, as a crash would) and waits for it to exit. A persistent
    /// broker's storage stays for the next [`start`](Self::start).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker with SIGTERM (its orderly shutdown), killing it if it has not exited
    /// within 10 s. A persistent broker's storage stays for the next [`start`](Self::start).
    pub fn terminate(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Whether the process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The broker's address (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `bootstrap.servers` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("tansu-{}.log", self.starts))
    }

    /// What the broker has logged in its current (or last) run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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
        self.kill();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}
