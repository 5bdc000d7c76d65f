//! rumqttc's MQTT 5.0 client driven the way the tests need it: its event loop runs in a task until the first
//! connection error and never reconnects, so a test sees exactly what the broker did; every wait is bounded;
//! PUBLISHes passed over while waiting for something else are kept for `next_publish`. Each test file adds
//! the steps of its own scenarios in an `impl V5` block of its own.
#![allow(dead_code)]

use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet, Publish};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use rumqttc::Outgoing;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

/// A connected rumqttc v5 client.
pub struct V5 {
    /// Its client id, named in failures.
    pub id: String,
    /// The rumqttc handle, for requests.
    pub handle: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    task: tokio::task::JoinHandle<()>,
    /// PUBLISHes passed over while waiting for something else, in order.
    pub stash: VecDeque<Publish>,
    /// The bound on each wait.
    pub wait: Duration,
}

impl V5 {
    /// Connects, waiting at most `wait` for each answer; the broker's refusal comes back as the error.
    pub async fn try_connect_within(
        options: MqttOptions,
        wait: Duration,
    ) -> Result<(V5, ConnAck), ConnectionError> {
        let id = options.client_id();
        let (handle, mut event_loop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = event_loop.poll().await;
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut client = V5 {
            id,
            handle,
            events,
            task,
            stash: VecDeque::new(),
            wait,
        };
        match timeout(wait, client.events.recv()).await {
            Err(_) => panic!("{}: no CONNACK within {wait:?}", client.id),
            Ok(None) => panic!("{}: event loop ended before CONNACK", client.id),
            Ok(Some(Err(e))) => Err(e),
            Ok(Some(Ok(Event::Incoming(Packet::ConnAck(ack))))) => Ok((client, ack)),
            Ok(Some(Ok(other))) => panic!("{}: expected CONNACK, got {other:?}", client.id),
        }
    }

    /// Connects and panics unless the broker accepts.
    pub async fn connect_within(options: MqttOptions, wait: Duration) -> (V5, ConnAck) {
        match V5::try_connect_within(options, wait).await {
            Ok(connected) => connected,
            Err(e) => panic!("connection refused or failed: {e:?}"),
        }
    }

    /// Waits for an event that `pick` accepts; incoming PUBLISHes passed over are kept.
    pub async fn wait_event<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + self.wait;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!(
                    "{}: timed out after {:?} waiting for {what}",
                    self.id, self.wait
                ),
                Ok(None) => panic!("{}: event loop ended while waiting for {what}", self.id),
                Ok(Some(Err(e))) => {
                    panic!(
                        "{}: connection ended while waiting for {what}: {e:?}",
                        self.id
                    )
                }
                Ok(Some(Ok(event))) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                    if let Event::Incoming(Packet::Publish(p)) = event {
                        self.stash.push_back(p);
                    }
                }
            }
        }
    }

    /// Waits for an incoming packet that `pick` accepts.
    pub async fn wait_incoming<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        self.wait_event(what, |e| match e {
            Event::Incoming(p) => pick(p),
            Event::Outgoing(_) => None,
        })
        .await
    }

    /// The next PUBLISH, kept or new.
    pub async fn next_publish(&mut self) -> Publish {
        if let Some(p) = self.stash.pop_front() {
            return p;
        }
        self.wait_incoming("PUBLISH", |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// The next `n` PUBLISHes, in arrival order.
    pub async fn next_n(&mut self, n: usize) -> Vec<Publish> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_publish().await);
        }
        out
    }

    /// Asserts that no PUBLISH arrives and the connection stays up until `deadline`.
    pub async fn expect_no_publish_until(&mut self, deadline: Instant) {
        if let Some(p) = self.stash.pop_front() {
            panic!("{}: unexpected PUBLISH {p:?}", self.id);
        }
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Err(_) => return,
                Ok(None) => panic!("{}: event loop ended during a quiet window", self.id),
                Ok(Some(Err(e))) => {
                    panic!("{}: connection ended during a quiet window: {e:?}", self.id)
                }
                Ok(Some(Ok(Event::Incoming(Packet::Publish(p))))) => {
                    panic!("{}: unexpected PUBLISH {p:?}", self.id)
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends DISCONNECT (Normal disconnection), waits until it is written, then closes the socket.
    pub async fn disconnect(mut self) {
        self.handle.disconnect().await.unwrap();
        self.wait_event("DISCONNECT written", |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
        self.kill().await;
    }

    /// Drops the connection without DISCONNECT, as a network failure would.
    pub async fn kill(self) {
        self.task.abort();
        let _ = timeout(self.wait, self.task).await;
    }
}
