//! A client program run by a test (paho-mqtt in Python, MQTT.js in node) that follows a JSON plan and prints
//! one JSON event per line: the events as they come, each wait bounded, the process killed when dropped.

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

/// One running scripted client and the events it printed so far.
pub struct Scripted {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Bound on each wait for the next event.
    wait: Duration,
    /// Every event read so far, with whether a `wait_for` has returned it.
    events: Vec<(Value, bool)>,
}

impl Scripted {
    /// Runs `command` (which prints the events), named `name` in failures; each event is awaited for at most
    /// `wait`.
    pub fn start(name: String, mut command: Command, wait: Duration) -> Scripted {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Scripted {
            name,
            child,
            stdin,
            lines,
            wait,
            events: Vec::new(),
        }
    }

    /// Reads the next event; panics on an "error" event, the end of output, or after the wait.
    pub async fn read_event(&mut self, waiting_for: &str) -> Value {
        let line = match timeout(self.wait, self.lines.next_line()).await {
            Err(_) => panic!(
                "{}: nothing within {:?} while waiting for {waiting_for}; events {:?}",
                self.name,
                self.wait,
                self.all()
            ),
            Ok(Err(e)) => panic!("{}: cannot read its output: {e}", self.name),
            Ok(Ok(None)) => panic!(
                "{}: exited while waiting for {waiting_for}; events {:?}",
                self.name,
                self.all()
            ),
            Ok(Ok(Some(line))) => line,
        };
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
        if event["event"] == "error" {
            panic!(
                "{}: {} (waiting for {waiting_for}); events {:?}",
                self.name,
                event["message"],
                self.all()
            );
        }
        self.events.push((event.clone(), false));
        event
    }

    /// The next event of this kind not returned before.
    pub async fn wait_for(&mut self, kind: &str) -> Value {
        if let Some((event, taken)) = self
            .events
            .iter_mut()
            .find(|(e, taken)| !*taken && e["event"] == kind)
        {
            *taken = true;
            return event.clone();
        }
        loop {
            let event = self.read_event(kind).await;
            if event["event"] == kind {
                self.events.last_mut().unwrap().1 = true;
                return event;
            }
        }
    }

    /// Lets the plan's next `wait_release` step go on.
    pub async fn release(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        timeout(self.wait, async {
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        })
        .await
        .expect("writing to the script's stdin timed out")
        .expect("cannot write to the script's stdin");
    }

    /// Waits until the plan ran to its end and the process exited with success; returns every event.
    pub async fn finish(mut self) -> Vec<Value> {
        while !self.events.iter().any(|(e, _)| e["event"] == "done") {
            self.read_event("the end of the plan").await;
        }
        self.stdin.take();
        let status = timeout(self.wait, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit", self.name))
            .unwrap();
        assert!(status.success(), "{} exited with {status}", self.name);
        self.all()
    }

    /// Every event read so far.
    pub fn all(&self) -> Vec<Value> {
        self.events.iter().map(|(e, _)| e.clone()).collect()
    }

    /// The "message" events read so far.
    pub fn messages_so_far(&self) -> usize {
        self.events
            .iter()
            .filter(|(e, _)| e["event"] == "message")
            .count()
    }
}

/// The events of one kind, in order.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}
