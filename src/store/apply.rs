//! Applies one batch of operations to a write transaction: coalescing, body reference counts and queue limits.
//! Owns the meaning of every `StoreOp`; never commits, replies or decides durability.

use super::limits::Queues;
use super::records::{self, QueueRecord, SessionRecord, StateRecord};
use super::tables::{self, client_successor};
use super::{OverflowPolicy, StoreError, StoreOp};
use crate::codec::{ClientId, QoS};
use crate::message::Message;
use redb::{ReadableTable, Table, WriteTransaction};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// What a batch did, for the counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcome {
    pub applied: u64,
    pub coalesced: u64,
    pub dropped: u64,
}

/// Marks the operations undone within the batch: an `Enqueue` later `Remove`d, with any `MarkSent`/`MarkReleased` between.
fn cancelled(ops: &[&StoreOp]) -> Vec<bool> {
    let mut skip = vec![false; ops.len()];
    let mut open: HashMap<(&str, u64), Vec<usize>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            StoreOp::Enqueue { client_id, seq, .. } => {
                let key = (client_id.as_str(), *seq);
                // A second Enqueue of the same entry overwrites the first; leave both to run as written.
                if open.remove(&key).is_none() {
                    open.insert(key, vec![i]);
                }
            }
            StoreOp::MarkSent { client_id, seq, .. }
            | StoreOp::MarkReleased { client_id, seq, .. } => {
                if let Some(positions) = open.get_mut(&(client_id.as_str(), *seq)) {
                    positions.push(i);
                }
            }
            StoreOp::Remove { client_id, seq } => {
                if let Some(positions) = open.remove(&(client_id.as_str(), *seq)) {
                    for p in positions {
                        skip[p] = true;
                    }
                    skip[i] = true;
                }
            }
            _ => {}
        }
    }
    skip
}

/// Applies the `requests` of a batch in order (minus the coalesced operations) to `txn`, updating `queues`.
///
/// Each request is checked before anything of the batch is written: one that names a message body nobody
/// stored is refused alone, its error in the returned list at its place, and the others go on. An error while
/// writing (I/O, a corrupt record) still fails the whole batch.
pub(crate) fn apply_batch(
    txn: &WriteTransaction,
    requests: &[&[StoreOp]],
    queues: &mut Queues,
) -> Result<(Outcome, Vec<Option<StoreError>>), StoreError> {
    let mut applier = Applier {
        t: Tables::open(txn)?,
        bodies: HashMap::new(),
        queues,
        now: Instant::now(),
        outcome: Outcome::default(),
    };
    let mut stored_here = HashSet::new();
    let mut refused = Vec::with_capacity(requests.len());
    let mut ops = Vec::with_capacity(requests.iter().map(|r| r.len()).sum());
    for request in requests {
        match applier.check(request, &mut stored_here) {
            Ok(()) => {
                ops.extend(request.iter());
                refused.push(None);
            }
            Err(e) => refused.push(Some(e)),
        }
    }
    let skip = cancelled(&ops);
    for (op, skipped) in ops.iter().zip(&skip) {
        if *skipped {
            applier.outcome.coalesced += 1;
        } else {
            applier.apply(op)?;
            applier.outcome.applied += 1;
        }
    }
    applier.finish_bodies()?;
    Ok((applier.outcome, refused))
}

/// Every table of the schema, opened once per batch.
struct Tables<'t> {
    sessions: Table<'t, &'static str, &'static [u8]>,
    subs: Table<'t, (&'static str, &'static str), u64>,
    messages: Table<'t, u64, &'static [u8]>,
    queue: Table<'t, (&'static str, u64), &'static [u8]>,
    qos2: Table<'t, (&'static str, u16), ()>,
    retained: Table<'t, &'static str, &'static [u8]>,
    wills: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            sessions: txn.open_table(tables::SESSIONS)?,
            subs: txn.open_table(tables::SUBSCRIPTIONS)?,
            messages: txn.open_table(tables::MESSAGES)?,
            queue: txn.open_table(tables::QUEUE)?,
            qos2: txn.open_table(tables::INCOMING_QOS2)?,
            retained: txn.open_table(tables::RETAINED)?,
            wills: txn.open_table(tables::WILLS)?,
        })
    }
}

/// A body touched by the batch: new (with its message) or already stored, and how its reference count moves.
#[derive(Default)]
struct BodyRef {
    message: Option<Arc<Message>>,
    size: Option<u32>,
    delta: i64,
}

struct Applier<'t, 'q> {
    t: Tables<'t>,
    bodies: HashMap<u64, BodyRef>,
    queues: &'q mut Queues,
    now: Instant,
    outcome: Outcome,
}

impl Applier<'_, '_> {
    /// Whether `request` can be applied: every queue entry it adds names a body that is stored, stored by an
    /// earlier accepted request of the batch (`stored_here`), or stored by the request itself before it. The
    /// bodies the request stores join `stored_here` once it is accepted.
    fn check(
        &mut self,
        request: &[StoreOp],
        stored_here: &mut HashSet<u64>,
    ) -> Result<(), StoreError> {
        let mut own = Vec::new();
        for op in request {
            match op {
                StoreOp::StoreMessage { id, .. } => own.push(id.0),
                StoreOp::Enqueue { message, .. }
                    if !own.contains(&message.0) && !stored_here.contains(&message.0) =>
                {
                    self.body_size(message.0)?;
                }
                _ => {}
            }
        }
        stored_here.extend(own);
        Ok(())
    }

    fn apply(&mut self, op: &StoreOp) -> Result<(), StoreError> {
        match op {
            StoreOp::CreateSession {
                client_id,
                level,
                now_ms,
            } => self.create_session(client_id, records::level_to_u8(*level), *now_ms)?,
            StoreOp::SetWill { client_id, will } => match will {
                Some((due_ms, message)) => {
                    let encoded = records::encode_will(*due_ms, message)?;
                    self.t
                        .wills
                        .insert(client_id.as_str(), encoded.as_slice())?;
                }
                None => {
                    self.t.wills.remove(client_id.as_str())?;
                }
            },
            StoreOp::SetSessionExpiry {
                client_id,
                session_expiry,
            } => self.set_session_expiry(client_id, *session_expiry)?,
            StoreOp::TouchSession { client_id, now_ms } => {
                self.touch_session(client_id, *now_ms)?
            }
            StoreOp::DeleteSession { client_id } => self.delete_session(client_id)?,
            StoreOp::Subscribe {
                client_id,
                filter,
                grant,
            } => {
                self.t.subs.insert(
                    (client_id.as_str(), filter.as_str()),
                    records::grant_to_u64(grant),
                )?;
            }
            StoreOp::Unsubscribe { client_id, filter } => {
                self.t.subs.remove((client_id.as_str(), filter.as_str()))?;
            }
            StoreOp::StoreMessage { id, message } => {
                let body = self.bodies.entry(id.0).or_default();
                body.size = Some(records::body_size(
                    message.topic.as_str().len(),
                    message.payload.len(),
                ));
                body.message = Some(Arc::clone(message));
            }
            StoreOp::Enqueue {
                client_id,
                seq,
                message,
                qos,
                retain,
                subscription_ids,
            } => self.enqueue(
                client_id,
                *seq,
                message.0,
                *qos,
                (*retain, subscription_ids.clone()),
            )?,
            StoreOp::MarkSent {
                client_id,
                seq,
                packet_id,
            } => self.set_state(client_id, *seq, StateRecord::PublishSent(packet_id.get()))?,
            StoreOp::MarkReleased {
                client_id,
                seq,
                packet_id,
            } => self.set_state(client_id, *seq, StateRecord::PubRelSent(packet_id.get()))?,
            StoreOp::Remove { client_id, seq } => self.remove_entry(client_id, *seq)?,
            StoreOp::AddIncomingQos2 {
                client_id,
                packet_id,
            } => {
                self.t
                    .qos2
                    .insert((client_id.as_str(), packet_id.get()), ())?;
            }
            StoreOp::RemoveIncomingQos2 {
                client_id,
                packet_id,
            } => {
                self.t.qos2.remove((client_id.as_str(), packet_id.get()))?;
            }
            StoreOp::SetRetained { message } => {
                let encoded = records::encode_message("retained", message, 0)?;
                self.t
                    .retained
                    .insert(message.topic.as_str(), encoded.as_slice())?;
            }
            StoreOp::DeleteRetained { topic } => {
                self.t.retained.remove(topic.as_str())?;
            }
        }
        Ok(())
    }

    fn read_session(&self, client: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self.t.sessions.get(client)? {
            Some(value) => Ok(Some(records::decode_session(client, value.value())?)),
            None => Ok(None),
        }
    }

    fn create_session(
        &mut self,
        client: &ClientId,
        level: u8,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let record = match self.read_session(client.as_str())? {
            Some(old) => SessionRecord {
                level,
                last_seen_ms: now_ms,
                ..old
            },
            None => SessionRecord {
                level,
                created_at_ms: now_ms,
                last_seen_ms: now_ms,
                expiry_interval_ms: None,
            },
        };
        self.write_session(client, &record)
    }

    fn write_session(
        &mut self,
        client: &ClientId,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let encoded = records::encode_session(record)?;
        self.t
            .sessions
            .insert(client.as_str(), encoded.as_slice())?;
        Ok(())
    }

    /// Rewrites a stored session's record with `change` applied; nothing when the session is not stored.
    fn update_session(
        &mut self,
        client: &ClientId,
        change: impl FnOnce(SessionRecord) -> SessionRecord,
    ) -> Result<(), StoreError> {
        match self.read_session(client.as_str())? {
            Some(old) => self.write_session(client, &change(old)),
            None => Ok(()),
        }
    }

    fn set_session_expiry(
        &mut self,
        client: &ClientId,
        session_expiry: Option<u32>,
    ) -> Result<(), StoreError> {
        self.update_session(client, |old| SessionRecord {
            expiry_interval_ms: session_expiry.map(|secs| u64::from(secs) * 1000),
            ..old
        })
    }

    fn touch_session(&mut self, client: &ClientId, now_ms: u64) -> Result<(), StoreError> {
        self.update_session(client, |old| SessionRecord {
            last_seen_ms: now_ms,
            ..old
        })
    }

    fn delete_session(&mut self, client: &ClientId) -> Result<(), StoreError> {
        let cid = client.as_str();
        self.t.sessions.remove(cid)?;
        self.t.wills.remove(cid)?;
        let succ = client_successor(cid);
        self.t
            .subs
            .retain_in((cid, "")..(succ.as_str(), ""), |_, _| false)?;
        let mut released = Vec::new();
        for item in self
            .t
            .queue
            .extract_from_if((cid, 0u64)..=(cid, u64::MAX), |_, _| true)?
        {
            let (key, value) = item?;
            let record = records::decode_queue(cid, key.value().1, value.value())?;
            if record.state.holds_body() {
                released.push(record.message);
            }
        }
        for id in released {
            self.release(id);
        }
        self.t
            .qos2
            .retain_in((cid, 0u16)..=(cid, u16::MAX), |_, _| false)?;
        self.queues.remove_session(client);
        Ok(())
    }

    fn release(&mut self, id: u64) {
        self.bodies.entry(id).or_default().delta -= 1;
    }

    /// The size of a body, new in this batch or stored; `MissingMessage` when it is neither.
    fn body_size(&mut self, id: u64) -> Result<u32, StoreError> {
        if let Some(size) = self.bodies.get(&id).and_then(|b| b.size) {
            return Ok(size);
        }
        let size = match self.t.messages.get(id)? {
            Some(value) => records::message_refs_and_size(id, value.value())?.1,
            None => return Err(StoreError::MissingMessage(id)),
        };
        self.bodies.entry(id).or_default().size = Some(size);
        Ok(size)
    }

    fn enqueue(
        &mut self,
        client: &ClientId,
        seq: u64,
        id: u64,
        qos: QoS,
        (retain, subscription_ids): (bool, Vec<u32>),
    ) -> Result<(), StoreError> {
        let size = self.body_size(id)?;
        let bytes = u64::from(size);
        // QoS 2 messages are queued beyond the limits rather than lost.
        if qos != QoS::ExactlyOnce
            && self.queues.is_full(client, bytes)
            && !self.make_room(client, bytes)?
        {
            self.count_drop(client);
            return Ok(());
        }
        let record = QueueRecord {
            message: id,
            qos: qos.as_u8(),
            bytes: size,
            state: StateRecord::Queued,
            retain,
            subscription_ids,
        };
        let encoded = records::encode_queue(&record)?;
        let old = match self
            .t
            .queue
            .insert((client.as_str(), seq), encoded.as_slice())?
        {
            Some(value) => Some(records::decode_queue(client.as_str(), seq, value.value())?),
            None => None,
        };
        if let Some(old) = old.filter(|o| o.state.holds_body()) {
            self.release(old.message);
            self.queues.adjust(client, false, u64::from(old.bytes));
        }
        self.bodies.entry(id).or_default().delta += 1;
        self.queues.adjust(client, true, bytes);
        Ok(())
    }

    /// Under `DropOldest`, drops the session's oldest waiting non-QoS-2 entries until `bytes` fit; false if they cannot.
    fn make_room(&mut self, client: &ClientId, bytes: u64) -> Result<bool, StoreError> {
        let limits = self.queues.limits();
        if limits.overflow == OverflowPolicy::DropNew || bytes > limits.max_bytes {
            return Ok(false);
        }
        while self.queues.is_full(client, bytes) {
            let Some((seq, victim)) = self.oldest_droppable(client.as_str())? else {
                return Ok(false);
            };
            self.t.queue.remove((client.as_str(), seq))?;
            self.release(victim.message);
            self.queues.adjust(client, false, u64::from(victim.bytes));
            self.count_drop(client);
        }
        Ok(true)
    }

    fn oldest_droppable(&self, client: &str) -> Result<Option<(u64, QueueRecord)>, StoreError> {
        for item in self.t.queue.range((client, 0u64)..=(client, u64::MAX))? {
            let (key, value) = item?;
            let seq = key.value().1;
            let record = records::decode_queue(client, seq, value.value())?;
            if record.state == StateRecord::Queued && record.qos < QoS::ExactlyOnce.as_u8() {
                return Ok(Some((seq, record)));
            }
        }
        Ok(None)
    }

    fn count_drop(&mut self, client: &ClientId) {
        self.queues.record_drop(client, self.now);
        self.outcome.dropped += 1;
    }

    fn read_entry(&self, client: &str, seq: u64) -> Result<Option<QueueRecord>, StoreError> {
        match self.t.queue.get((client, seq))? {
            Some(value) => Ok(Some(records::decode_queue(client, seq, value.value())?)),
            None => Ok(None),
        }
    }

    fn set_state(
        &mut self,
        client: &ClientId,
        seq: u64,
        state: StateRecord,
    ) -> Result<(), StoreError> {
        let Some(mut record) = self.read_entry(client.as_str(), seq)? else {
            log::debug!("store: no queue entry ({client:?}, {seq}) to move to {state:?}");
            return Ok(());
        };
        if !record.state.holds_body() && state.holds_body() {
            log::warn!(
                "store: queue entry ({client:?}, {seq}) is already released; {state:?} ignored"
            );
            return Ok(());
        }
        if record.state.holds_body() && !state.holds_body() {
            self.release(record.message);
            self.queues.adjust(client, false, u64::from(record.bytes));
        }
        record.state = state;
        let encoded = records::encode_queue(&record)?;
        self.t
            .queue
            .insert((client.as_str(), seq), encoded.as_slice())?;
        Ok(())
    }

    fn remove_entry(&mut self, client: &ClientId, seq: u64) -> Result<(), StoreError> {
        let removed = match self.t.queue.remove((client.as_str(), seq))? {
            Some(value) => Some(records::decode_queue(client.as_str(), seq, value.value())?),
            None => None,
        };
        if let Some(record) = removed.filter(|r| r.state.holds_body()) {
            self.release(record.message);
            self.queues.adjust(client, false, u64::from(record.bytes));
        }
        Ok(())
    }

    /// Writes new bodies that ended with references and moves the counts of stored ones, deleting those left with none.
    fn finish_bodies(&mut self) -> Result<(), StoreError> {
        for (id, body) in std::mem::take(&mut self.bodies) {
            match body.message {
                Some(message) if body.delta > 0 => {
                    let refs = u32::try_from(body.delta).unwrap_or(u32::MAX);
                    let encoded = records::encode_message("messages", &message, refs)?;
                    self.t.messages.insert(id, encoded.as_slice())?;
                }
                Some(_) => {}
                None if body.delta != 0 => self.move_refs(id, body.delta)?,
                None => {}
            }
        }
        Ok(())
    }

    fn move_refs(&mut self, id: u64, delta: i64) -> Result<(), StoreError> {
        let updated = match self.t.messages.get(id)? {
            Some(value) => {
                let (refs, _) = records::message_refs_and_size(id, value.value())?;
                let refs = i64::from(refs) + delta;
                if refs > 0 {
                    let refs = u32::try_from(refs).unwrap_or(u32::MAX);
                    Some(Some(records::message_with_refs(id, value.value(), refs)?))
                } else {
                    Some(None)
                }
            }
            None => None,
        };
        match updated {
            Some(Some(encoded)) => {
                self.t.messages.insert(id, encoded.as_slice())?;
            }
            Some(None) => {
                self.t.messages.remove(id)?;
            }
            None => log::error!("store: reference count change {delta} for missing message {id}"),
        }
        Ok(())
    }
}
