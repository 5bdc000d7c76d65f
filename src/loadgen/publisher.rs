//! A benchmark publisher: pipelined PUBLISH batches from a template, with a QoS 1/2 window.
//! Owns the publisher's packet identifiers and pacing; knows nothing of who receives the messages.

use crate::codec::{Packet, PacketId, QoS};
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
    /// Unacknowledged QoS 1/2 messages allowed at once.
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
    let mut state = PubState {
        report: PublisherReport::default(),
        ids: PacketIds::default(),
        seq: 0,
    };
    let result = tokio::select! {
        r = state.drive(&mut conn, &plan, &counters) => r,
        _ = stopped(&mut stop) => Ok(()),
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
            let window_full = self.ids.len() >= usize::from(plan.window);
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
            } else if self.ids.len() >= usize::from(plan.window) {
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

    fn handle_acks(&mut self, conn: &mut Conn, counters: &Counters) -> Result<(), ClientError> {
        let mut acked = 0;
        while let Some(packet) = conn.next_packet()? {
            match packet {
                Packet::PubAck(ack) | Packet::PubComp(ack) => {
                    if self.ids.release(ack.packet_id) {
                        acked += 1;
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
