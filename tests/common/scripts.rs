//! Client scripts under `tests/clients/` run with the test Python ([`super::python`]), their
//! output read as one JSON object per line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Starts `tests/clients/<script>` with `args`; its output lines, parsed, arrive on the receiver.
pub fn run_client(script: &str, args: &[&str]) -> (Child, mpsc::Receiver<Value>) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut child = Command::new(super::python())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the client script");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = lines.send(value);
            }
        }
    });
    (child, received)
}

/// The next output line within `limit`.
pub fn next_line(received: &mpsc::Receiver<Value>, limit: Duration) -> Value {
    received
        .recv_timeout(limit)
        .expect("the client script said nothing in time")
}

/// Waits for the script to exit successfully within `limit`.
pub fn wait_success(mut child: Child, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the client script failed: {status}");
            return;
        }
        assert!(start.elapsed() < limit, "the client script did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every output line of a script that ends within `limit`, after checking it succeeded.
pub fn run_to_end(script: &str, args: &[&str], limit: Duration) -> Vec<Value> {
    let (child, received) = run_client(script, args);
    wait_success(child, limit);
    received.try_iter().collect()
}
