//! Multi-process runs: the child's side (JSON lines on stdout, commands on stdin) and the
//! parent's handle on a child process.

use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use crate::hist::HistPairs;
use crate::stats::Snapshot;
use crate::worker::Worker;

/// Command that opens the measurement window.
const CMD_MEASURE: &str = "measure";
/// Command that closes the window and asks for the final snapshot.
const CMD_STOP: &str = "stop";

/// One line a child writes on stdout.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChildMsg {
    /// Once per second.
    Progress(Snapshot),
    /// After `stop`; carries the window histogram.
    Final(Snapshot),
}

fn emit(msg: &ChildMsg) {
    let line = serde_json::to_string(msg).expect("snapshot serializes");
    let mut out = std::io::stdout().lock();
    // A vanished parent is noticed through stdin EOF; ignore write errors here.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Child main loop: reports progress every second and obeys `measure` / `stop` from stdin.
/// Returns when stopped or when the parent goes away.
pub async fn serve(worker: Worker) -> Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ramp_check = tokio::time::interval(Duration::from_millis(50));
    let mut ramping = true;
    loop {
        tokio::select! {
            _ = tick.tick() => emit(&ChildMsg::Progress(worker.snapshot())),
            // Report the end of the ramp at once so the parent need not wait a second.
            _ = ramp_check.tick(), if ramping => {
                if worker.ramp_done() {
                    ramping = false;
                    emit(&ChildMsg::Progress(worker.snapshot()));
                }
            }
            line = lines.next_line() => match line?.as_deref().map(str::trim) {
                Some(CMD_MEASURE) => worker.start_measure(),
                Some(CMD_STOP) => {
                    emit(&ChildMsg::Final(worker.stop()));
                    return Ok(());
                }
                Some(_) => {}
                None => return Ok(()),
            },
        }
    }
}

#[derive(Default)]
struct Latest {
    snapshot: Snapshot,
    pending_interval: HistPairs,
    exited: bool,
}

/// The parent's view of one child process.
pub struct ChildHandle {
    index: usize,
    child: Child,
    stdin: ChildStdin,
    latest: Arc<Mutex<Latest>>,
    final_rx: oneshot::Receiver<Snapshot>,
}

impl ChildHandle {
    /// Re-executes this program as child `index` of `procs` with the parent's options.
    pub fn spawn(index: usize, procs: usize) -> Result<ChildHandle> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .arg("--child")
            .arg(format!("{index}/{procs}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning child {index}"))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let latest = Arc::new(Mutex::new(Latest::default()));
        let (final_tx, final_rx) = oneshot::channel();
        tokio::spawn(read_lines(index, stdout, latest.clone(), final_tx));
        Ok(ChildHandle {
            index,
            child,
            stdin,
            latest,
            final_rx,
        })
    }

    /// Latest progress, with the latency intervals received since the previous call.
    pub fn take(&self) -> Snapshot {
        let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = l.snapshot.clone();
        s.interval_hist = std::mem::take(&mut l.pending_interval);
        s
    }

    /// Whether the child's latest progress says its ramp is over.
    pub fn ramp_done(&self) -> bool {
        let l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        l.exited || (l.snapshot.procs > 0 && l.snapshot.ramp_done())
    }

    /// Whether the child's stdout closed (it exited or crashed).
    pub fn exited(&self) -> bool {
        self.latest.lock().map(|l| l.exited).unwrap_or(true)
    }

    /// Opens the measurement window in the child.
    pub async fn start_measure(&mut self) {
        self.command(CMD_MEASURE).await;
    }

    async fn command(&mut self, cmd: &str) {
        let line = format!("{cmd}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            eprintln!("child {}: cannot send {cmd}: {e}", self.index);
        }
        let _ = self.stdin.flush().await;
    }

    /// Sends `stop`, waits for the final snapshot (falling back to the last progress) and
    /// reaps the process.
    pub async fn finish(mut self, wait: Duration) -> Snapshot {
        self.command(CMD_STOP).await;
        let fin = match tokio::time::timeout(wait, &mut self.final_rx).await {
            Ok(Ok(s)) => s,
            _ => {
                eprintln!("child {}: no final report, using last progress", self.index);
                self.take()
            }
        };
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        fin
    }
}

async fn read_lines(
    index: usize,
    stdout: tokio::process::ChildStdout,
    latest: Arc<Mutex<Latest>>,
    final_tx: oneshot::Sender<Snapshot>,
) {
    let mut lines = BufReader::new(stdout).lines();
    let mut final_tx = Some(final_tx);
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<ChildMsg>(&line) {
            Ok(ChildMsg::Progress(s)) => {
                let mut l = latest.lock().unwrap_or_else(|e| e.into_inner());
                l.pending_interval.extend_from_slice(&s.interval_hist);
                l.snapshot = s;
            }
            Ok(ChildMsg::Final(s)) => {
                if let Some(tx) = final_tx.take() {
                    let _ = tx.send(s);
                }
            }
            Err(e) => eprintln!("child {index}: bad line ({e}): {line:.120}"),
        }
    }
    latest.lock().unwrap_or_else(|e| e.into_inner()).exited = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip() {
        let mut s = Snapshot {
            target: 7,
            interval_hist: vec![[10, 2], [2000, 1]],
            ..Snapshot::default()
        };
        s.reasons.insert("close:1008".into(), 3);
        let line = serde_json::to_string(&ChildMsg::Final(s)).unwrap();
        assert!(line.starts_with(r#"{"type":"final""#), "{line}");
        match serde_json::from_str::<ChildMsg>(&line).unwrap() {
            ChildMsg::Final(b) => {
                assert_eq!(b.target, 7);
                assert_eq!(b.interval_hist, vec![[10, 2], [2000, 1]]);
                assert_eq!(b.reasons["close:1008"], 3);
            }
            other => panic!("{other:?}"),
        }
    }
}
