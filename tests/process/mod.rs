//! The built `harbormq` binary as a child process for the tests that run it: start on port 0, kill -9, SIGTERM,
//! restart, and the bounded wait of every network step. A `BrokerProcess` that goes out of scope (also on panic) kills its broker.

pub mod client;
pub mod numbered;
pub mod raw;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Upper bound of any single wait on the network (connect, an ack, the next message).
pub const STEP: Duration = Duration::from_secs(15);

/// How long a broker may take from spawn to a log line a test waits for.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The log line the broker prints once its TCP listener is bound; the address follows it.
const READY_MARKER: &str = "MQTT over TCP on ";

/// Awaits `fut`, failing the test with `what` if it takes longer than `STEP`.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(STEP, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// What the broker has logged so far, and whether its stderr has closed.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// The address that follows `marker` in `line`, if the line holds one.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let at = line.find(marker)?;
    line.get(at + marker.len()..)?.trim().parse().ok()
}

/// One running broker process on a data directory, killed when dropped.
pub struct BrokerProcess {
    child: Option<Child>,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: Arc<(Mutex<Log>, Condvar)>,
}

impl BrokerProcess {
    /// Starts the broker on `data_dir` with `durability` (`sync`, `periodic:MS`, `off`) on a free port, and waits for it to listen.
    pub fn start(data_dir: &Path, durability: &str) -> BrokerProcess {
        BrokerProcess::start_with(data_dir, "", &["--durability", durability])
    }

    /// Starts the broker on `data_dir` on a free port, with its admin API on `admin_bind` (empty for none) and
    /// `extra` flags, and waits for it to listen.
    pub fn start_with(data_dir: &Path, admin_bind: &str, extra: &[&str]) -> BrokerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_harbormq"))
            .args(["serve", "--bind", "127.0.0.1:0", "--ws-bind", ""])
            .args(["--admin-bind", admin_bind])
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
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let sink = Arc::clone(&log);
        // The reader keeps draining after the lines a test waits for, so the broker never blocks on a full pipe.
        thread::spawn(move || {
            let (log, changed) = &*sink;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().lines.push(line);
                changed.notify_all();
            }
            log.lock().unwrap().closed = true;
            changed.notify_all();
        });
        let mut process = BrokerProcess {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            log,
        };
        process.addr = process.wait_for_addr(READY_MARKER);
        process
    }

    /// Waits for the first log line in which an address follows `marker`, and returns that address.
    ///
    /// Panics (after a SIGKILL) if no such line comes within `READY_TIMEOUT` or the broker's log ends first.
    pub fn wait_for_addr(&mut self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + READY_TIMEOUT;
        let found = {
            let (log, changed) = &*self.log;
            let mut log = log.lock().unwrap();
            loop {
                let addr = log.lines.iter().find_map(|line| addr_after(line, marker));
                let now = Instant::now();
                if addr.is_some() || log.closed || now >= deadline {
                    break addr;
                }
                log = changed.wait_timeout(log, deadline - now).unwrap().0;
            }
        };
        found.unwrap_or_else(|| {
            self.kill9();
            panic!(
                "broker did not print {marker:?} with an address within {READY_TIMEOUT:?}; log:\n{}",
                self.log_text()
            )
        })
    }

    /// Starts a new broker on the same data directory (and a new port), as a restart after a crash.
    pub fn restart(&self, durability: &str) -> BrokerProcess {
        assert!(
            self.child.is_none(),
            "restart of a broker that still runs on {}",
            self.addr
        );
        BrokerProcess::start(&self.data_dir, durability)
    }

    /// The broker's MQTT TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's TCP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The broker's process id while it runs, for reading its `/proc` figures.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the broker with SIGKILL and reaps it; nothing of it runs afterwards.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the broker to exit, returning its exit status.
    ///
    /// Panics (after a SIGKILL) if the broker does not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("terminate a running broker");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            child.id()
        );
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the broker") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (as `kill` names it: HUP, TERM...) to the running broker.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("signal a running broker");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", child.id());
    }

    /// Waits (at most `READY_TIMEOUT`) for a log line containing `needle` after the first `skip` lines, and
    /// returns how many lines the log then has (the `skip` of a later wait).
    pub fn wait_for_log(&self, needle: &str, skip: usize) -> usize {
        self.wait_for_line(&format!("{needle:?}"), skip, |line| line.contains(needle))
    }

    /// Waits (at most `READY_TIMEOUT`) for a log line that `wanted` accepts after the first `skip` lines
    /// (`what` names it in the failure), woken by each new line; returns the log's length then.
    pub fn wait_for_line(&self, what: &str, skip: usize, wanted: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + READY_TIMEOUT;
        let (log, changed) = &*self.log;
        let mut log = log.lock().unwrap();
        loop {
            if let Some(at) = log.lines.iter().skip(skip).position(|l| wanted(l)) {
                return skip + at + 1;
            }
            let now = Instant::now();
            assert!(
                !log.closed && now < deadline,
                "the broker did not log {what} within {READY_TIMEOUT:?}; log:\n{}",
                log.lines.join("\n")
            );
            log = changed.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Everything the broker has logged so far, one line per entry.
    pub fn log_text(&self) -> String {
        self.log
            .0
            .lock()
            .map(|log| log.lines.join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
