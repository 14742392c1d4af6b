//! Running the `switchyard` binary in tests, every wait bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for.
pub const LIMIT: Duration = Duration::from_secs(20);

pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

/// What a finished run printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `switchyard ARGS` to completion within [`LIMIT`].
pub fn run(args: &[&str]) -> Finished {
    let child = binary()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(output) => {
            let output = output.expect("wait for switchyard");
            Finished {
                status: output.status,
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            signal(pid, "KILL");
            panic!("switchyard {args:?} did not exit within {LIMIT:?}");
        }
    }
}

/// Sends a signal (`TERM`, `INT`, `KILL`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Writes `text` to a fresh file for this test and returns its path.
pub fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `switchyard`, its stderr lines arriving on a channel. Killed on drop.
pub struct Running {
    pub child: Child,
    pub stderr: Receiver<String>,
    pub stdout: Receiver<String>,
    seen: Vec<String>,
}

fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `switchyard` started with the open-file limit lowered to `soft` and `hard` (by the
/// shell's `ulimit`, which the binary then inherits through `exec`, keeping the pid).
pub fn binary_with_descriptor_limit(soft: u64, hard: u64) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -Sn "$1" && ulimit -Hn "$2" && shift 2 && exec "$@""#)
        .arg("sh")
        .arg(soft.to_string())
        .arg(hard.to_string())
        .arg(env!("CARGO_BIN_EXE_switchyard"));
    command
}

impl Running {
    pub fn start(args: &[&str]) -> Running {
        let mut command = binary();
        command.args(args);
        Running::spawn(command)
    }

    /// Starts `command` (a [`binary`] or [`binary_with_descriptor_limit`] with its
    /// arguments).
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let stderr = lines_of(child.stderr.take().unwrap());
        let stdout = lines_of(child.stdout.take().unwrap());
        Running {
            child,
            stderr,
            stdout,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` (or finds one already read) and
    /// returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line containing {needle:?} within {LIMIT:?}; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The stderr lines read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Waits for the `listening on ADDR` log line and returns the address.
    pub fn listening_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_log("listening on ");
        let addr = line.rsplit("listening on ").next().unwrap().trim();
        addr.parse()
            .unwrap_or_else(|_| panic!("bad address in {line:?}"))
    }

    /// Waits for the `admin endpoints on http://ADDR/...` log line and returns the address.
    pub fn admin_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_log("admin endpoints on http://");
        line.split("http://")
            .nth(1)
            .and_then(|rest| {
                rest.split(':')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(":")
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no admin address in {line:?}"))
    }

    /// Waits for the process to exit within [`LIMIT`]; by then every stderr line it
    /// wrote has been read.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The channel ends when the pipe does, at the process's exit.
                while let Ok(line) = self.stderr.recv_timeout(LIMIT) {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "switchyard did not exit within {LIMIT:?}"
            );
            // Drain stderr meanwhile; it also paces this loop without a bare sleep.
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
