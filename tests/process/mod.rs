//! The built `harbormq` binary as a child process for crash tests: start on port 0, kill -9, SIGTERM, restart.
//! Owns the child's lifetime: a `BrokerProcess` that goes out of scope (also on panic) kills its broker.

pub mod raw;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a broker may take from spawn to its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The log line the broker prints once its TCP listener is bound; the address follows it.
const READY_MARKER: &str = "MQTT over TCP on ";

/// One running broker process on a data directory, killed when dropped.
pub struct BrokerProcess {
    child: Option<Child>,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl BrokerProcess {
    /// Starts the broker on `data_dir` with `durability` (`sync`, `periodic:MS`, `off`) on a free port, and waits for it to listen.
    pub fn start(data_dir: &Path, durability: &str) -> BrokerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_harbormq"))
            .arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--ws-bind")
            .arg("")
            .arg("--admin-bind")
            .arg("")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--durability")
            .arg(durability)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the harbormq binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let log_sink = Arc::clone(&log);
        // The reader keeps draining after the ready line so the broker never blocks on a full pipe.
        thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(READY_MARKER) {
                    let addr = line[at + READY_MARKER.len()..].trim().parse::<SocketAddr>();
                    if let (Some(tx), Ok(addr)) = (ready_tx.take(), addr) {
                        let _ = tx.send(addr);
                    }
                }
                log_sink.lock().unwrap().push(line);
            }
        });
        let mut process = BrokerProcess {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            log,
        };
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(addr) => process.addr = addr,
            Err(_) => {
                process.kill9();
                panic!(
                    "broker did not print its ready line within {READY_TIMEOUT:?}; log:\n{}",
                    process.log_text()
                );
            }
        }
        process
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

    /// The broker's TCP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
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

    /// Everything the broker has logged so far, one line per entry.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
