//! A benchmark publisher: pipelined PUBLISH batches from a template, with a QoS 1/2 window.
//! Owns the publisher's packet identifiers and pacing; knows nothing of who receives the messages.

use crate::codec::{Packet, PacketId, QoS, ReasonCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::client::{ClientError, Conn};
use super::payload::Stamp;
use super::progress::{stopped, Counters, StopRx};
use super::wire::PublishTemplate;

/// Bytes gathered before one write to the socket.
const BATCH_BYTES: usize = 64 * 1024;

/// What one publisher is asked to send.
#[derive(Debug, Clone)]
pub struct PublisherPlan {
    /// Publisher index, carried in every payload.
    pub index: u32,
    /// The encoded PUBLISH to copy and patch.
    pub template: PublishTemplate,
    /// QoS the template was encoded with.
    pub qos: QoS,
    /// Messages to send.
    pub messages: u32,
    /// Unacknowledged QoS 1/2 messages allowed at once (fewer if the broker's Receive Maximum is lower).
    pub window: u16,
    /// Messages per second, or `None` to send as fast as the broker reads.
    pub rate: Option<u32>,
    /// Origin of the nanosecond timestamps in payloads.
    pub epoch: std::time::Instant,
}

/// What one publisher achieved.
#[derive(Debug, Clone, Default)]
pub struct PublisherReport {
    /// Messages written.
    pub sent: u64,
    /// Messages acknowledged (PUBACK, or PUBCOMP for QoS 2); equals `sent` at QoS 0 once written.
    pub acked: u64,
    /// Messages the broker refused with an MQTT 5.0 reason code of 0x80 or above in PUBACK, PUBREC or PUBCOMP.
    pub refused: u64,
    /// The reason code of the first refusal.
    pub first_refusal: Option<ReasonCode>,
    /// The Receive Maximum of the broker's MQTT 5.0 CONNACK, which bounded the window when lower.
    pub broker_receive_maximum: Option<u16>,
    /// When the first batch was written.
    pub first_sent: Option<Instant>,
    /// When the last message was written (QoS 0) or acknowledged (QoS 1/2).
    pub done_at: Option<Instant>,
    /// Why the publisher stopped early, if it did.
    pub error: Option<String>,
}

/// Packet identifiers in use by unacknowledged publishes.
#[derive(Debug, Clone)]
pub struct PacketIds {
    used: Vec<u64>,
    count: usize,
    next: u16,
}

impl Default for PacketIds {
    fn default() -> Self {
        PacketIds {
            used: vec![0; 1024],
            count: 0,
            next: 1,
        }
    }
}

impl PacketIds {
    /// Number of identifiers in use.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no identifier is in use.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn slot(id: u16) -> (usize, u64) {
        (usize::from(id / 64), 1u64 << (id % 64))
    }

    /// Takes the next free identifier after the last one taken, or `None` when all 65,535 are in use.
    pub fn take(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            let (word, bit) = Self::slot(id);
            let w = self.used.get_mut(word)?;
            if *w & bit == 0 {
                *w |= bit;
                self.count += 1;
                return PacketId::new(id);
            }
        }
        None
    }

    /// Frees an identifier; returns false when it was not in use (an acknowledgement for nothing).
    pub fn release(&mut self, id: PacketId) -> bool {
        let (word, bit) = Self::slot(id.get());
        match self.used.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                *w &= !bit;
                self.count -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Runs one publisher to the end of its plan, an error, or the stop signal.
pub async fn run_publisher(
    mut conn: Conn,
    plan: PublisherPlan,
    counters: Arc<Counters>,
    mut stop: StopRx,
) -> PublisherReport {
    let broker_receive_maximum = conn.limits().receive_maximum;
    let mut state = PubState {
        report: PublisherReport {
            broker_receive_maximum,
            ..PublisherReport::default()
        },
        ids: PacketIds::default(),
        // Never more unacknowledged QoS 1/2 publishes than the broker's Receive Maximum [MQTT-3.3.4-7 in 5.0].
        window: plan
            .window
            .min(broker_receive_maximum.unwrap_or(u16::MAX))
            .max(1),
        seq: 0,
    };
    let result = if plan.template.level() != conn.level() {
        Err(ClientError::Unexpected(
            "PUBLISH template encoded at another protocol level than the connection's",
        ))
    } else {
        tokio::select! {
            r = state.drive(&mut conn, &plan, &counters) => r,
            _ = stopped(&mut stop) => Ok(()),
        }
    };
    if let Err(e) = result {
        state.report.error = Some(e.to_string());
    } else if state.report.error.is_none() && state.done(&plan) {
        let _ = conn.disconnect().await;
    }
    counters.finished.fetch_add(1, Ordering::AcqRel);
    state.report
}

struct PubState {
    report: PublisherReport,
    ids: PacketIds,
    /// Unacknowledged QoS 1/2 publishes allowed: the plan's window within the broker's Receive Maximum.
    window: u16,
    seq: u32,
}

impl PubState {
    fn done(&self, plan: &PublisherPlan) -> bool {
        self.seq == plan.messages && self.ids.is_empty()
    }

    async fn drive(
        &mut self,
        conn: &mut Conn,
        plan: &PublisherPlan,
        counters: &Counters,
    ) -> Result<(), ClientError> {
        let started = Instant::now();
        conn.wbuf.reserve(BATCH_BYTES + plan.template.len());
        loop {
            let due = match plan.rate {
                None => plan.messages,
                Some(rate) => due_by(started.elapsed(), rate).min(plan.messages),
            };
            let written = self.fill(conn, plan, due);
            if !conn.wbuf.is_empty() {
                conn.flush().await?;
                let now = Instant::now();
                self.report.first_sent.get_or_insert(now);
                if plan.qos == QoS::AtMostOnce {
                    self.report.done_at = Some(now);
                    self.report.acked += written;
                    Counters::add(&counters.acked, written);
                }
                Counters::add(&counters.sent, written);
            }
            if self.done(plan) {
                return Ok(());
            }
            let window_full = self.ids.len() >= usize::from(self.window);
            let may_send_now = plan.rate.is_none() && self.seq < plan.messages && !window_full;
            if may_send_now {
                if conn.try_read_more()? > 0 {
                    self.handle_acks(conn, counters)?;
                }
                continue;
            }
            let next_due = plan.rate.filter(|_| self.seq < plan.messages).map(|rate| {
                started + Duration::from_secs_f64(f64::from(self.seq) / f64::from(rate))
            });
            let awaiting_acks = !self.ids.is_empty();
            tokio::select! {
                r = conn.read_more(), if awaiting_acks => {
                    r?;
                    self.handle_acks(conn, counters)?;
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or(started)), if next_due.is_some() => {}
            }
        }
    }

    /// Appends publishes up to `due`, the window and the batch size; returns how many.
    fn fill(&mut self, conn: &mut Conn, plan: &PublisherPlan, due: u32) -> u64 {
        let sent_ns = plan.epoch.elapsed().as_nanos() as u64;
        let mut written = 0;
        while self.seq < due && conn.wbuf.len() < BATCH_BYTES {
            let id = if plan.qos == QoS::AtMostOnce {
                None
            } else if self.ids.len() >= usize::from(self.window) {
                break;
            } else {
                match self.ids.take() {
                    Some(id) => Some(id),
                    None => break,
                }
            };
            let patch = plan.template.append(&mut conn.wbuf);
            if let Some(id) = id {
                patch.set_packet_id(&mut conn.wbuf, id);
            }
            Stamp {
                publisher: plan.index,
                seq: self.seq,
                sent_ns,
            }
            .write(patch.stamp(&mut conn.wbuf));
            self.seq += 1;
            written += 1;
        }
        self.report.sent += written;
        written
    }

    /// Takes the acknowledgements out of the read buffer. In MQTT 5.0 they may carry a reason code: one of
    /// 0x80 or above ends the message's flow as refused (no PUBREL follows such a PUBREC, section 4.3.3 of 5.0).
    fn handle_acks(&mut self, conn: &mut Conn, counters: &Counters) -> Result<(), ClientError> {
        let mut acked = 0;
        while let Some(packet) = conn.next_packet()? {
            match packet {
                Packet::PubAck(ack) | Packet::PubComp(ack) => {
                    if self.ids.release(ack.packet_id) {
                        if ack.reason.is_error() {
                            self.refuse(ack.reason);
                        } else {
                            acked += 1;
                        }
                    }
                }
                Packet::PubRec(ack) if ack.reason.is_error() => {
                    if self.ids.release(ack.packet_id) {
                        self.refuse(ack.reason);
                    }
                }
                Packet::PubRec(ack) => conn.queue(&Packet::PubRel(ack.packet_id.into()))?,
                Packet::PingResp => {}
                other => return Err(ClientError::Unexpected(other.name())),
            }
        }
        if acked > 0 {
            self.report.acked += acked;
            self.report.done_at = Some(Instant::now());
            Counters::add(&counters.acked, acked);
        }
        Ok(())
    }

    fn refuse(&mut self, reason: ReasonCode) {
        self.report.refused += 1;
        self.report.first_refusal.get_or_insert(reason);
    }
}

/// How many messages a publisher at `rate` per second should have sent after `elapsed`.
pub fn due_by(elapsed: Duration, rate: u32) -> u32 {
    let due = elapsed.as_secs_f64() * f64::from(rate);
    if due >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        due as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::properties::boxed;
    use crate::codec::{props, Ack, ConnAck, Properties, ProtocolLevel};
    use crate::loadgen::client::ConnectOptions;
    use crate::loadgen::test_broker::{FakeBroker, Peer, WAIT};
    use crate::loadgen::wire::{user_properties, PublishTemplate};
    use tokio::sync::watch;

    /// A v5 publisher of `messages` at `qos` with a window of `window`, against a fake broker whose CONNACK
    /// states `receive_maximum`; returns the broker's side and the publisher's task.
    async fn v5_publisher(
        qos: QoS,
        messages: u32,
        window: u16,
        receive_maximum: Option<u16>,
    ) -> (
        Peer,
        tokio::task::JoinHandle<PublisherReport>,
        watch::Sender<bool>,
    ) {
        let broker = FakeBroker::start().await;
        let addr = broker.addr.clone();
        let level = ProtocolLevel::V5;
        let connecting = tokio::spawn(async move {
            let options = ConnectOptions {
                level,
                clean: true,
                keep_alive_secs: 0,
                receive_maximum: Some(window),
                credentials: None,
                tls: None,
            };
            Conn::connect(&addr, "pub0", &options).await.unwrap().0
        });
        let connack = ConnAck {
            session_present: false,
            code: ReasonCode::SUCCESS,
            properties: boxed(Properties {
                receive_maximum,
                ..Properties::default()
            }),
        };
        let (peer, connect) = broker.accept(connack).await;
        assert_eq!(props(&connect.properties).receive_maximum, Some(window));
        let conn = connecting.await.unwrap();
        let plan = PublisherPlan {
            index: 0,
            template: PublishTemplate::new("t/0", qos, 16, level, &user_properties(2)).unwrap(),
            qos,
            messages,
            window,
            rate: None,
            epoch: std::time::Instant::now(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_publisher(
            conn,
            plan,
            Arc::new(Counters::default()),
            stop_rx,
        ));
        (peer, task, stop_tx)
    }

    /// Reads PUBLISHes until none comes for a moment, checking each carries the two user properties.
    async fn publishes(peer: &mut Peer) -> Vec<PacketId> {
        let mut ids = Vec::new();
        for packet in peer.drain_for(Duration::from_millis(200)).await {
            match packet {
                Packet::Publish(p) => {
                    let properties = p.properties.as_deref().unwrap().to_properties();
                    assert_eq!(properties.user_properties.len(), 2);
                    ids.extend(p.packet_id);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
        ids
    }

    #[tokio::test]
    async fn a_v5_publisher_keeps_within_the_brokers_receive_maximum() {
        let (mut peer, task, _stop) = v5_publisher(QoS::AtLeastOnce, 20, 64, Some(3)).await;
        let mut acked = 0;
        while acked < 20 {
            let ids = publishes(&mut peer).await;
            assert!(
                !ids.is_empty() && ids.len() <= 3,
                "{} unacknowledged, the broker allows 3",
                ids.len()
            );
            for id in ids {
                peer.send(&Packet::PubAck(id.into())).await;
                acked += 1;
            }
        }
        let report = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!((report.sent, report.acked, report.refused), (20, 20, 0));
        assert_eq!(report.broker_receive_maximum, Some(3));
        assert_eq!(report.error, None);
    }

    #[tokio::test]
    async fn refusals_in_v5_acks_free_the_window_and_are_counted() {
        let (mut peer, task, _stop) = v5_publisher(QoS::ExactlyOnce, 4, 4, None).await;
        let ids = publishes(&mut peer).await;
        assert_eq!(ids.len(), 4);
        // A refused PUBREC ends the flow, no PUBREL; a success PUBREC gets PUBREL, then PUBCOMP.
        let refuse = |id: PacketId, reason| Ack::with_reason(id, reason);
        peer.send(&Packet::PubRec(refuse(ids[0], ReasonCode::QUOTA_EXCEEDED)))
            .await;
        peer.send(&Packet::PubRec(refuse(ids[1], ReasonCode::NOT_AUTHORIZED)))
            .await;
        peer.send(&Packet::PubRec(refuse(
            ids[2],
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
        )))
        .await;
        peer.send(&Packet::PubRec(ids[3].into())).await;
        let mut released = Vec::new();
        while released.len() < 2 {
            match peer.recv().await {
                Packet::PubRel(rel) => released.push(rel.packet_id),
                other => panic!("expected PUBREL, got {other:?}"),
            }
        }
        assert_eq!(
            released,
            [ids[2], ids[3]],
            "no PUBREL after a refused PUBREC"
        );
        for id in released {
            peer.send(&Packet::PubComp(id.into())).await;
        }
        let report = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!((report.sent, report.acked, report.refused), (4, 2, 2));
        assert_eq!(report.first_refusal, Some(ReasonCode::QUOTA_EXCEEDED));
        assert_eq!(report.broker_receive_maximum, None);
    }

    #[tokio::test]
    async fn a_v5_disconnect_stops_the_publisher_with_its_reason() {
        let (mut peer, task, _stop) = v5_publisher(QoS::AtLeastOnce, 10, 2, None).await;
        assert_eq!(publishes(&mut peer).await.len(), 2);
        peer.send(&Packet::Disconnect(crate::codec::ReasonOnly::new(
            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
        )))
        .await;
        let report = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        let error = report.error.unwrap();
        assert!(
            error.contains("DISCONNECT with reason code 0x93"),
            "{error}"
        );
    }

    #[test]
    fn packet_ids_are_unique_while_in_use_and_reused_after_release() {
        let mut ids = PacketIds::default();
        let a = ids.take().unwrap();
        let b = ids.take().unwrap();
        assert_ne!(a, b);
        assert_eq!(ids.len(), 2);
        assert!(ids.release(a));
        assert!(
            !ids.release(a),
            "a second ack for the same id frees nothing"
        );
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn packet_ids_skip_those_in_use_when_wrapping() {
        let mut ids = PacketIds::default();
        let first = ids.take().unwrap();
        for _ in 1..u16::MAX {
            let id = ids.take().unwrap();
            assert!(ids.release(id));
        }
        let next = ids.take().unwrap();
        assert_ne!(
            next, first,
            "id {first} is still unacknowledged [MQTT-2.3.1-4]"
        );
        assert_ne!(next.get(), 0, "[MQTT-2.3.1-1]");
    }

    #[test]
    fn all_ids_in_use_yields_none() {
        let mut ids = PacketIds::default();
        for _ in 0..u16::MAX {
            assert!(ids.take().is_some());
        }
        assert_eq!(ids.take(), None);
    }

    #[test]
    fn pacing_sends_the_first_message_at_once_then_rate_per_second() {
        assert_eq!(due_by(Duration::ZERO, 1000), 1);
        assert_eq!(due_by(Duration::from_millis(10), 1000), 11);
        assert_eq!(due_by(Duration::from_secs(2), 5), 11);
    }
}
