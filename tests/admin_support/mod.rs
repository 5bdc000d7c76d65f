//! The real `harbormq` binary for the admin tests: a broker process with its admin API on a free port, and
//! the admin commands run as child processes with their exit code and output. The broker process itself comes from
//! `process`; a dropped broker is killed.
#![allow(dead_code)]

use crate::process::BrokerProcess;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The log line the broker prints once its admin API is bound; the address follows it.
const ADMIN_MARKER: &str = "admin HTTP API on ";

/// How long a stopped broker may take to exit: any clean shutdown fits, a hanging one fails the test.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker process, killed when dropped.
pub struct AdminBroker {
    process: BrokerProcess,
    /// The MQTT TCP address.
    pub mqtt: SocketAddr,
    /// The admin API address, when it runs.
    pub admin: Option<SocketAddr>,
}

impl AdminBroker {
    /// Starts the broker on `data_dir` with `extra` flags; waits for the admin line when `admin` is set.
    pub fn start(data_dir: &Path, admin: bool, extra: &[&str]) -> AdminBroker {
        let admin_bind = if admin { "127.0.0.1:0" } else { "" };
        let mut process = BrokerProcess::start_with(data_dir, admin_bind, extra);
        let admin = admin.then(|| process.wait_for_addr(ADMIN_MARKER));
        AdminBroker {
            mqtt: process.addr(),
            admin,
            process,
        }
    }

    /// The admin API URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.admin.expect("the admin API runs"))
    }

    /// Stops the broker with SIGTERM and waits for it to exit cleanly.
    pub fn stop(&mut self) {
        let status = self.process.terminate(STOP_TIMEOUT);
        assert!(status.success(), "broker exit status {status}");
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
