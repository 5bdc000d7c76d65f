//! The real `harbormq` binary for the admin tests: a broker process with its admin API on a free port, and
//! the admin commands run as child processes with their exit code and output. A dropped broker is killed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a broker may take to print a line the test waits for.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A broker process.
pub struct AdminBroker {
    child: Option<Child>,
    /// The MQTT TCP address.
    pub mqtt: SocketAddr,
    /// The admin API address, when it runs.
    pub admin: Option<SocketAddr>,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let at = line.find(marker)?;
    line.get(at + marker.len()..)?.trim().parse().ok()
}

impl AdminBroker {
    /// Starts the broker on `data_dir` with `extra` flags; waits for the admin line when `admin` is set.
    pub fn start(data_dir: &Path, admin: bool, extra: &[&str]) -> AdminBroker {
        let admin_bind = if admin { "127.0.0.1:0" } else { "" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_harbormq"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--ws-bind",
                "",
                "--admin-bind",
            ])
            .arg(admin_bind)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the harbormq binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut broker = AdminBroker {
            child: Some(child),
            mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
        };
        loop {
            let line = rx
                .recv_timeout(READY_TIMEOUT)
                .expect("the broker printed its listeners");
            if let Some(addr) = addr_after(&line, "MQTT over TCP on ") {
                broker.mqtt = addr;
            }
            if let Some(addr) = addr_after(&line, "admin HTTP API on ") {
                broker.admin = Some(addr);
            }
            if broker.mqtt.port() != 0 && (broker.admin.is_some() || !admin) {
                break;
            }
        }
        // Keep draining so the broker never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        broker
    }

    /// The admin API URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.admin.expect("the admin API runs"))
    }

    /// Stops the broker with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = child.wait().expect("wait for the broker");
        assert!(status.success(), "broker exit status {status}");
    }
}

impl Drop for AdminBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The outcome of one admin command.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts exit code 1 with `needle` in stderr.
    pub fn fails_with(&self, needle: &str) {
        assert_eq!(
            self.code, 1,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr:\n{}",
            self.stderr
        );
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).expect("JSON output")
    }
}

/// Runs `harbormq ARGS`.
pub fn harbormq(args: &[&str]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_harbormq"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run the harbormq binary");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
