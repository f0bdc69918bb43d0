//! Child processes with bounded waits: one-shot commands ([`run_cmd`]) and
//! long-running ones whose output is read as it comes ([`BgProcess`]); and
//! [`read_file`] for the logs they leave.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct CmdOutput {
    /// `None` when the process was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// Panics with everything the process printed unless it succeeded.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.success(),
            "{what} failed (status {:?}, timed out: {})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.timed_out,
            self.stdout,
            self.stderr
        );
    }
}

fn reader_thread<R: Read + Send + 'static>(r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits (bounded) for `child` to exit by itself; `None` if it is still
/// running at `timeout` (or cannot be waited for).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// SIGKILL, then reap.
pub fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `child` a signal (`kill SIG pid`), e.g. "-TERM" or "-STOP".
pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status();
}

/// Spawns `cmd` with stdin from /dev/null and stdout and stderr piped.
fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"))
}

/// Runs `cmd` to completion, killing it at `timeout`.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    let mut child = spawn_piped(cmd);
    let out = reader_thread(child.stdout.take().unwrap());
    let err = reader_thread(child.stderr.take().unwrap());
    let status = wait_exit(&mut child, timeout);
    let timed_out = status.is_none();
    if timed_out {
        kill_and_reap(&mut child);
    }
    CmdOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    }
}

/// A background process whose stdout lines are collected as they come.
/// Killed (SIGKILL) on drop.
pub struct BgProcess {
    name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl BgProcess {
    pub fn spawn(cmd: &mut Command) -> BgProcess {
        let name = format!("{cmd:?}");
        let mut child = spawn_piped(cmd);
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Some(reader_thread(child.stderr.take().unwrap()));
        BgProcess {
            name,
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits (bounded) for a stdout line satisfying `pred`; returns it.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return Some(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// Every stdout line seen so far (including ones consumed by waits).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// Sends a signal (`kill SIG pid`), e.g. "-TERM".
    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }

    /// Kills the process and returns its stderr.
    pub fn kill_and_stderr(&mut self) -> String {
        kill_and_reap(&mut self.child);
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn describe(&mut self) -> String {
        let seen = self.drain().join("\n");
        let err = self.kill_and_stderr();
        format!(
            "{}\n--- stdout ---\n{seen}\n--- stderr ---\n{err}",
            self.name
        )
    }
}

impl Drop for BgProcess {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// Reads the whole file (for logs in asserts).
pub fn read_file(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}
