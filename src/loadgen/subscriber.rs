//! A benchmark subscriber: decodes PUBLISH packets in the read buffer, counts them and acknowledges in batches.
//! Owns one subscriber's tracker and latency histogram; never publishes.

use crate::codec::{Packet, QoS};
use hdrhistogram::Histogram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

use super::client::{ClientError, Conn};
use super::payload::Stamp;
use super::progress::{stopped, Counters, StopRx};
use super::tracker::SeqTracker;

/// Highest latency the histograms can hold, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A histogram of latencies in microseconds with three significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .expect("constant histogram bounds are within hdrhistogram's limits")
}

/// What one subscriber saw.
#[derive(Debug, Clone)]
pub struct SubscriberReport {
    /// Loss, duplicate and order accounting.
    pub tracker: SeqTracker,
    /// Latency from the payload's send time to receipt, in microseconds.
    pub latency: Histogram<u64>,
    /// When the first message arrived.
    pub first_at: Option<Instant>,
    /// When the last message arrived.
    pub last_at: Option<Instant>,
    /// Why the subscriber stopped early, if it did.
    pub error: Option<String>,
}

/// How one subscriber behaves once subscribed.
#[derive(Debug, Clone)]
pub struct SubscriberPlan {
    /// The messages it expects.
    pub tracker: SeqTracker,
    /// Origin of the nanosecond timestamps in payloads.
    pub epoch: std::time::Instant,
    /// Send DISCONNECT once everything has arrived (a persistent session then keeps nothing queued).
    pub disconnect_when_done: bool,
}

/// Receives until every expected message has arrived, an error, or the stop signal.
pub async fn run_subscriber(
    mut conn: Conn,
    plan: SubscriberPlan,
    counters: Arc<Counters>,
    mut stop: StopRx,
) -> SubscriberReport {
    let mut report = SubscriberReport {
        tracker: plan.tracker.clone(),
        latency: latency_histogram(),
        first_at: None,
        last_at: None,
        error: None,
    };
    let result = tokio::select! {
        r = receive(&mut conn, &plan, &counters, &mut report) => r,
        _ = stopped(&mut stop) => Ok(()),
    };
    match result {
        Err(e) => report.error = Some(e.to_string()),
        Ok(()) if plan.disconnect_when_done && report.tracker.is_complete() => {
            if let Err(e) = conn.disconnect().await {
                report.error = Some(e.to_string());
            }
        }
        Ok(()) => {}
    }
    counters.finished.fetch_add(1, Ordering::AcqRel);
    report
}

async fn receive(
    conn: &mut Conn,
    plan: &SubscriberPlan,
    counters: &Counters,
    report: &mut SubscriberReport,
) -> Result<(), ClientError> {
    while !report.tracker.is_complete() {
        conn.read_more().await?;
        let now = Instant::now();
        let now_ns = plan.epoch.elapsed().as_nanos() as u64;
        let mut received = 0;
        while let Some(packet) = conn.next_packet()? {
            match packet {
                Packet::Publish(publish) => {
                    received += 1;
                    if let Some(stamp) = Stamp::read(&publish.payload) {
                        report.tracker.record(stamp.publisher, stamp.seq);
                        let _ = report
                            .latency
                            .record(now_ns.saturating_sub(stamp.sent_ns) / 1_000);
                    }
                    match (publish.qos, publish.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => conn.queue(&Packet::PubAck(id.into()))?,
                        (QoS::ExactlyOnce, Some(id)) => conn.queue(&Packet::PubRec(id.into()))?,
                        _ => {}
                    }
                }
                Packet::PubRel(rel) => conn.queue(&Packet::PubComp(rel.packet_id.into()))?,
                Packet::PingResp => {}
                other => return Err(ClientError::Unexpected(other.name())),
            }
        }
        if received > 0 {
            report.first_at.get_or_insert(now);
            report.last_at = Some(now);
            Counters::add(&counters.received, received);
        }
        conn.flush().await?;
    }
    Ok(())
}
