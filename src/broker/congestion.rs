//! Deliveries parked for sessions whose mailbox is full, in order, each holding its publisher's flow permit.
//! A publisher whose permits are all parked stops reading its socket, so a slow subscriber slows the
//! publishers that feed it instead of losing their messages. Plain data owned by the router.

use super::messages::SlotId;
use crate::protocol::Delivery;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// A publisher's claim on one routing batch; released when every delivery of the batch is in a mailbox.
pub type FlowPermit = Arc<OwnedSemaphorePermit>;

/// Batches parked for one slot before it stops parking and drops (or stores) instead.
pub const MAX_PARKED_BATCHES: usize = 1024;

/// The deliveries waiting for one session.
#[derive(Default)]
pub struct Parked {
    batches: VecDeque<(Vec<Delivery>, Option<FlowPermit>)>,
    /// A batch is on its way to the session; the next one goes when it has been handled.
    pub sending: bool,
    /// The session said its own queue is long; nothing is sent until it drains.
    pub paused_since: Option<std::time::Instant>,
}

/// Parked deliveries of every congested session.
#[derive(Default)]
pub struct Congestion {
    slots: HashMap<SlotId, Parked>,
}

impl Congestion {
    /// Whether deliveries for `slot` must queue behind parked ones to keep their order.
    pub fn is_congested(&self, slot: SlotId) -> bool {
        self.slots.contains_key(&slot)
    }

    /// Parks a batch; hands it back when the slot already holds as many as it may.
    pub fn park(
        &mut self,
        slot: SlotId,
        deliveries: Vec<Delivery>,
        permit: Option<FlowPermit>,
    ) -> Result<(), Vec<Delivery>> {
        let parked = self.slots.entry(slot).or_default();
        if parked.batches.len() >= MAX_PARKED_BATCHES {
            return Err(deliveries);
        }
        parked.batches.push_back((deliveries, permit));
        Ok(())
    }

    /// The next batch to send to `slot`, marking it in flight; `None` when nothing is parked or one is in flight.
    pub fn next_to_send(&mut self, slot: SlotId) -> Option<(Vec<Delivery>, Option<FlowPermit>)> {
        let parked = self.slots.get_mut(&slot)?;
        if parked.sending || parked.paused_since.is_some() {
            return None;
        }
        let next = parked.batches.pop_front();
        match next {
            Some(batch) => {
                parked.sending = true;
                Some(batch)
            }
            None => {
                self.slots.remove(&slot);
                None
            }
        }
    }

    /// Stops sending to `slot` until `resume`; later deliveries park behind.
    pub fn pause(&mut self, slot: SlotId) {
        let parked = self.slots.entry(slot).or_default();
        parked
            .paused_since
            .get_or_insert_with(std::time::Instant::now);
    }

    /// Lets parked batches flow to `slot` again.
    pub fn resume(&mut self, slot: SlotId) {
        if let Some(parked) = self.slots.get_mut(&slot) {
            parked.paused_since = None;
        }
    }

    /// How long `slot` has been paused, if it is.
    pub fn paused_for(&self, slot: SlotId) -> Option<std::time::Duration> {
        self.slots
            .get(&slot)
            .and_then(|p| p.paused_since)
            .map(|since| since.elapsed())
    }

    /// The batch in flight to `slot` was handled.
    pub fn sent(&mut self, slot: SlotId) {
        if let Some(parked) = self.slots.get_mut(&slot) {
            parked.sending = false;
        }
    }

    /// Gives up on `slot` (stuck or gone): returns what was parked, releasing the permits.
    pub fn abandon(&mut self, slot: SlotId) -> Vec<Delivery> {
        self.slots
            .remove(&slot)
            .map(|parked| parked.batches.into_iter().flat_map(|(d, _)| d).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::message::Message;
    use crate::topic::TopicName;
    use bytes::Bytes;
    use tokio::sync::Semaphore;

    fn delivery(n: u64) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: TopicName::new("t").unwrap(),
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: false,
                arrived_at_ms: n,
            }),
            qos: QoS::AtMostOnce,
            seq: None,
            retain: false,
        }
    }

    #[test]
    fn batches_leave_in_order_one_at_a_time_and_release_permits() {
        let semaphore = Arc::new(Semaphore::new(2));
        let mut congestion = Congestion::default();
        let slot = SlotId(1);
        for n in 0..2 {
            let permit = Arc::new(semaphore.clone().try_acquire_owned().unwrap());
            congestion
                .park(slot, vec![delivery(n)], Some(permit))
                .unwrap();
        }
        assert_eq!(semaphore.available_permits(), 0);
        let (first, permit) = congestion.next_to_send(slot).unwrap();
        assert_eq!(first[0].message.arrived_at_ms, 0);
        assert!(
            congestion.next_to_send(slot).is_none(),
            "one in flight at a time"
        );
        drop(permit);
        assert_eq!(semaphore.available_permits(), 1);
        congestion.sent(slot);
        let (second, _) = congestion.next_to_send(slot).unwrap();
        assert_eq!(second[0].message.arrived_at_ms, 1);
        congestion.sent(slot);
        assert!(congestion.next_to_send(slot).is_none());
        assert!(!congestion.is_congested(slot));
    }

    #[test]
    fn a_paused_slot_sends_nothing_until_resumed() {
        let mut congestion = Congestion::default();
        let slot = SlotId(3);
        congestion.pause(slot);
        congestion.park(slot, vec![delivery(0)], None).unwrap();
        assert!(congestion.next_to_send(slot).is_none());
        assert!(congestion.paused_for(slot).is_some());
        congestion.resume(slot);
        assert!(congestion.next_to_send(slot).is_some());
    }

    #[test]
    fn abandoning_releases_every_permit() {
        let semaphore = Arc::new(Semaphore::new(3));
        let mut congestion = Congestion::default();
        for n in 0..3 {
            let permit = Arc::new(semaphore.clone().try_acquire_owned().unwrap());
            congestion
                .park(SlotId(7), vec![delivery(n)], Some(permit))
                .unwrap();
        }
        assert_eq!(congestion.abandon(SlotId(7)).len(), 3);
        assert_eq!(semaphore.available_permits(), 3);
    }
}
