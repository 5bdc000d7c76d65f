//! How the router reaches whatever is attached to a client slot: a network session or an in-process
//! subscriber. Owns only the four recipients; knows nothing of what sits behind them.

use super::messages::{CloseForShutdown, Deliver, QueueBehind, TakenOver};
use actix::dev::{RecipientRequest, SendError};
use actix::prelude::*;

/// The mailbox of an attached client, as the router sees it: deliveries and the three control messages.
#[derive(Clone)]
pub struct SessionLink {
    deliver: Recipient<Deliver>,
    queue_behind: Recipient<QueueBehind>,
    taken_over: Recipient<TakenOver>,
    close: Recipient<CloseForShutdown>,
}

impl SessionLink {
    /// A link to any actor that takes deliveries and the control messages.
    pub fn new<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<Deliver>
            + Handler<QueueBehind>
            + Handler<TakenOver>
            + Handler<CloseForShutdown>,
    {
        SessionLink {
            deliver: addr.clone().recipient(),
            queue_behind: addr.clone().recipient(),
            taken_over: addr.clone().recipient(),
            close: addr.recipient(),
        }
    }

    /// Hands deliveries over without waiting; a full mailbox gives them back.
    pub fn try_send(&self, msg: Deliver) -> Result<(), SendError<Deliver>> {
        self.deliver.try_send(msg)
    }

    /// Hands deliveries over, resolving once they were handled.
    pub fn send(&self, msg: Deliver) -> RecipientRequest<Deliver> {
        self.deliver.send(msg)
    }

    /// Sends a control message, bypassing the mailbox limit (they are bounded by the number of clients).
    pub fn do_send<M: ControlMessage>(&self, msg: M) {
        msg.send_over(self);
    }
}

impl<A> From<Addr<A>> for SessionLink
where
    A: Actor<Context = Context<A>>
        + Handler<Deliver>
        + Handler<QueueBehind>
        + Handler<TakenOver>
        + Handler<CloseForShutdown>,
{
    fn from(addr: Addr<A>) -> Self {
        SessionLink::new(addr)
    }
}

/// A control message the router sends over a [`SessionLink`].
pub trait ControlMessage {
    /// Sends this message to its recipient on `link`.
    fn send_over(self, link: &SessionLink);
}

impl ControlMessage for QueueBehind {
    fn send_over(self, link: &SessionLink) {
        link.queue_behind.do_send(self);
    }
}

impl ControlMessage for TakenOver {
    fn send_over(self, link: &SessionLink) {
        link.taken_over.do_send(self);
    }
}

impl ControlMessage for CloseForShutdown {
    fn send_over(self, link: &SessionLink) {
        link.close.do_send(self);
    }
}

impl ControlMessage for Deliver {
    fn send_over(self, link: &SessionLink) {
        link.deliver.do_send(self);
    }
}
