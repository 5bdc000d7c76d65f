//! How the router reaches whatever is attached to a client slot: a network session or an in-process
//! subscriber. Owns only the four recipients; knows nothing of what sits behind them.

use super::inprocess::Subscriber;
use super::messages::Deliver;
use super::session::Session;
use actix::dev::SendError;
use actix::prelude::*;
use futures::future::BoxFuture;

/// The actor attached to a slot. An enum over the two kinds of client rather than four boxed recipients, so
/// each registry entry costs one address.
#[derive(Clone)]
pub enum SessionLink {
    /// A network connection's session.
    Network(Addr<Session>),
    /// An in-process subscriber of the library API.
    InProcess(Addr<Subscriber>),
}

/// Sends `$msg` to whichever actor `$link` holds, with `$method`.
macro_rules! dispatch {
    ($link:expr, $method:ident, $msg:expr) => {
        match $link {
            SessionLink::Network(addr) => addr.$method($msg),
            SessionLink::InProcess(addr) => addr.$method($msg),
        }
    };
}

impl SessionLink {
    /// Hands over deliveries unless the mailbox is full (the router's hot path).
    pub fn try_send(&self, msg: Deliver) -> Result<(), SendError<Deliver>> {
        dispatch!(self, try_send, msg)
    }

    /// Hands over deliveries, resolving once the actor handled them (used for parked batches).
    pub fn send(&self, msg: Deliver) -> BoxFuture<'static, Result<(), MailboxError>> {
        match self {
            SessionLink::Network(addr) => Box::pin(addr.send(msg)),
            SessionLink::InProcess(addr) => Box::pin(addr.send(msg)),
        }
    }

    /// Sends a control message regardless of the mailbox bound (bounded by the number of sessions).
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Session: Handler<M>,
        Subscriber: Handler<M>,
    {
        dispatch!(self, do_send, msg)
    }
}

impl From<Addr<Session>> for SessionLink {
    fn from(addr: Addr<Session>) -> Self {
        SessionLink::Network(addr)
    }
}

impl From<Addr<Subscriber>> for SessionLink {
    fn from(addr: Addr<Subscriber>) -> Self {
        SessionLink::InProcess(addr)
    }
}
