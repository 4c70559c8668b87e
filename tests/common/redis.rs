//! A private `redis-server` for one test: listens only on a unix socket in its own temporary
//! directory (no TCP port, so nothing to race for), keeps nothing on disk, and can be stopped
//! and started again on the same socket. Killed when dropped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `redis-server` binary: `$WSGATE_TEST_REDIS_SERVER`, else `/usr/bin/redis-server`.
fn binary() -> PathBuf {
    std::env::var_os("WSGATE_TEST_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// A `redis-server` process of this test's own.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    persistent: bool,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub fn new() -> RedisServer {
        let mut server = RedisServer {
            child: None,
            dir: tempfile::tempdir().expect("temporary directory"),
            persistent: false,
        };
        server.start();
        server
    }

    /// Like [`new`](Self::new), but writing every change to an append-only file in its
    /// directory, so a restart (even after a kill) finds its data again.
    pub fn persistent() -> RedisServer {
        let mut server = RedisServer {
            child: None,
            dir: tempfile::tempdir().expect("temporary directory"),
            persistent: true,
        };
        server.start();
        server
    }

    /// The unix socket it listens on.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL clients connect with.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Whether the process is running (started and not stopped).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server (again, on the same socket, empty) if it is not running, and waits
    /// until it answers PING.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let socket = self.socket();
        let _ = std::fs::remove_file(&socket);
        let log = self.dir.path().join("redis.log");
        let child = Command::new(binary())
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if self.persistent { "yes" } else { "no" })
            .arg("--appendfsync")
            .arg("always")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .arg("--daemonize")
            .arg("no")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(&socket) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("redis-server exited ({status}): {}", read_log(&log));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {} within 10 s: {}",
                socket.display(),
                read_log(&log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it to exit; its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Default for RedisServer {
    fn default() -> Self {
        RedisServer::new()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answers_ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}
