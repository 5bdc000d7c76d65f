//! Mosquitto as a peer of the tests: a `mosquitto` process on a free port of 127.0.0.1 with the configuration
//! lines a test gives, killed when dropped. Missing, it fails the test under HARBORMQ_CI and skips it elsewhere
//! (see `needs`).

use super::needs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running Mosquitto broker.
pub struct Mosquitto {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Mosquitto with `settings` (configuration lines) and returns once it logs that it is running, or
/// `None` when it is not installed.
pub fn start(settings: &str) -> Option<Mosquitto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nlog_dest stderr\n{settings}"),
    )
    .unwrap();
    let mut child = match Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            needs::missing(&format!(
                "cannot run mosquitto ({e}); install it with `apt-get install mosquitto`"
            ));
            return None;
        }
    };
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" running") {
                let _ = tx.send(());
            }
        }
    });
    let broker = Mosquitto {
        child,
        port,
        _dir: dir,
    };
    rx.recv_timeout(Duration::from_secs(10))
        .expect("mosquitto did not report running within 10 s");
    Some(broker)
}
