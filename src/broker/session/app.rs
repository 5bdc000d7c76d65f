//! The client end of an in-process subscription: what the connection core writes for it becomes values on a
//! bounded channel, and the acknowledgements a network client would send go back to the core at once, as
//! packets. Messages wait here while the channel is full, as bytes wait in a socket buffer.

use super::*;
use crate::broker::inprocess::ReceivedMessage;
use crate::codec::{Packet, QoS, ReasonCode, SubscribeReturnCode};
use crate::protocol::Emit;
use tokio::sync::mpsc;

/// How an in-process subscription's SUBSCRIBE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscribeOutcome {
    /// SUBACK granted the filter.
    Subscribed,
    /// CONNACK or SUBACK refused.
    Refused,
}

/// The channel an in-process subscription reads, and what waits for room in it.
pub(crate) struct AppSink {
    tx: mpsc::Sender<ReceivedMessage>,
    /// Messages waiting for room, in order, each with the acknowledgement to give once it is taken.
    pending: VecDeque<(ReceivedMessage, Option<Packet>)>,
    pending_bytes: usize,
    /// Told once the subscription is in place (or refused).
    ready: Option<oneshot::Sender<SubscribeOutcome>>,
    /// A wait for room is running.
    waiting: bool,
}

impl AppSink {
    /// A sink writing to `tx`, telling `ready` when SUBACK comes.
    pub(crate) fn new(
        tx: mpsc::Sender<ReceivedMessage>,
        ready: oneshot::Sender<SubscribeOutcome>,
    ) -> Self {
        AppSink {
            tx,
            pending: VecDeque::new(),
            pending_bytes: 0,
            ready: Some(ready),
            waiting: false,
        }
    }

    /// Takes the packets for the client; returns what the client answers (one read of all its packets, and
    /// the end of the connection if the reader is gone).
    pub(super) fn take(&mut self, emits: impl Iterator<Item = Emit>) -> Vec<Input> {
        let mut answers = Vec::new();
        let mut ended = None;
        for emit in emits {
            match emit {
                Emit::Publish(p) => {
                    let ack = match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => Some(Packet::PubAck(id.into())),
                        (QoS::ExactlyOnce, Some(id)) => Some(Packet::PubRec(id.into())),
                        _ => None,
                    };
                    let received = ReceivedMessage::new(p.message, p.qos, p.retain);
                    if let Some(closed) = self.send_or_keep(received, ack, &mut answers) {
                        ended = Some(closed);
                    }
                }
                Emit::Control(Packet::PubRel(id)) => answers.push(Packet::PubComp(id)),
                Emit::Control(Packet::ConnAck(ack)) if ack.code != ReasonCode::SUCCESS => {
                    self.tell(SubscribeOutcome::Refused)
                }
                Emit::Control(Packet::SubAck(ack)) => {
                    let granted = ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReturnCode::Success(_)));
                    self.tell(if granted {
                        SubscribeOutcome::Subscribed
                    } else {
                        SubscribeOutcome::Refused
                    });
                }
                Emit::Control(_) => {}
            }
        }
        read(answers).into_iter().chain(ended).collect()
    }

    /// Hands a message over, or keeps it until the reader makes room; an `End` input when the reader is gone.
    fn send_or_keep(
        &mut self,
        received: ReceivedMessage,
        ack: Option<Packet>,
        answers: &mut Vec<Packet>,
    ) -> Option<Input> {
        if !self.pending.is_empty() {
            self.keep(received, ack);
            return None;
        }
        match self.tx.try_send(received) {
            Ok(()) => {
                answers.extend(ack);
                None
            }
            Err(mpsc::error::TrySendError::Full(received)) => {
                self.keep(received, ack);
                None
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Some(Input::End(EndCause::Detached)),
        }
    }

    fn keep(&mut self, received: ReceivedMessage, ack: Option<Packet>) {
        self.pending_bytes += size_of(&received);
        self.pending.push_back((received, ack));
    }

    fn tell(&mut self, outcome: SubscribeOutcome) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(outcome);
        }
    }

    /// Topic and payload bytes of the messages waiting for room.
    pub(super) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Hands what waits over, in order, starting with the room `permit` holds, while the channel takes it;
    /// returns the acknowledgements of what it took.
    fn hand_over(&mut self, permit: mpsc::OwnedPermit<ReceivedMessage>) -> Vec<Packet> {
        let mut answers = Vec::new();
        if let Some((received, ack)) = self.pending.pop_front() {
            self.pending_bytes -= size_of(&received);
            permit.send(received);
            answers.extend(ack);
        }
        while let Some((received, ack)) = self.pending.pop_front() {
            let size = size_of(&received);
            match self.tx.try_send(received) {
                Ok(()) => {
                    self.pending_bytes -= size;
                    answers.extend(ack);
                }
                Err(e) => {
                    self.pending.push_front((e.into_inner(), ack));
                    break;
                }
            }
        }
        answers
    }

    /// Whether messages wait and no wait for room is running yet.
    pub(super) fn needs_room(&self) -> bool {
        !self.pending.is_empty() && !self.waiting
    }
}

impl Session {
    /// Waits for room in the channel, then hands over what waits (and acknowledges it), in order.
    pub(super) fn wait_for_room(&mut self, ctx: &mut Context<Self>) {
        let Sink::App(app) = &mut self.sink else {
            return;
        };
        app.waiting = true;
        let reserve = app.tx.clone().reserve_owned();
        ctx.spawn(reserve.into_actor(self).map(|permit, act, ctx| {
            let Sink::App(app) = &mut act.sink else {
                return;
            };
            app.waiting = false;
            let Ok(permit) = permit else {
                act.feed(Input::End(EndCause::Detached), ctx);
                return;
            };
            read(app.hand_over(permit)).into_iter().for_each(follow_up);
            act.feed(Input::Written, ctx);
            if matches!(&act.sink, Sink::App(app) if app.needs_room()) {
                act.wait_for_room(ctx);
            }
        }));
    }
}

impl Handler<ClientPackets> for Session {
    type Result = ();

    fn handle(&mut self, msg: ClientPackets, ctx: &mut Self::Context) {
        self.feed(Input::Read(msg.0.into_iter().map(Ok).collect()), ctx);
    }
}

impl Handler<DetachClient> for Session {
    type Result = ();

    fn handle(&mut self, _: DetachClient, ctx: &mut Self::Context) {
        self.feed(Input::End(EndCause::Detached), ctx);
    }
}

/// The client's answers as one read, if it has any.
fn read(answers: Vec<Packet>) -> Option<Input> {
    (!answers.is_empty()).then(|| Input::Read(answers.into_iter().map(Ok).collect()))
}

fn size_of(received: &ReceivedMessage) -> usize {
    received.topic().as_str().len() + received.payload().len()
}
