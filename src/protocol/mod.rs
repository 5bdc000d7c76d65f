//! The MQTT rules of one connection as plain code: a state machine without I/O that its owner drives.
//!
//! [`Connection::handle`] takes an [`Input`] (packets read, a delivery from the router, a store commit, a page
//! read from the store, the router's reply, a hook's verdict, a timer) and appends [`Outputs`] (packets to
//! write, store records, requests for the router, the store and the hooks, the next timer, a close). The
//! session actor and the in-process subscriber feed it and carry out what it returns; neither holds a rule of
//! its own. No actors, no sockets, no clock here: tests drive it with values and virtual time.
//!
//! The parts: [`connect`] (client identifier rules), [`acks`] (answers released in order once stored),
//! [`outbound`] (packet ids, the inflight window and the queue behind it), [`feed`] (a persistent session
//! catching up from its stored queue), [`credit`] (flow control towards the router), [`limits`] (the client
//! limits and the rate limits' token bucket), [`rights`] (what a client may do with topics), [`io`] (the
//! inputs and outputs) and [`connection`] (the state machine that uses them).

pub mod acks;
pub mod connect;
pub mod connection;
pub mod credit;
pub mod feed;
pub mod io;
pub mod limits;
pub mod outbound;
pub mod rights;
pub mod share;
pub mod v5;

pub use acks::{AckQueue, Answer, Ticket};
pub use connect::{accept_connect, ConnectDecision};
pub use connection::{Connection, Settings, STORE_PAGE};
pub use credit::{Credit, SESSION_CREDIT};
pub use feed::{Feed, StoredFeed};
pub use io::{
    CertificateName, ClientInfo, CloseReason, ConnectInfo, Emit, EndCause, Input, Notification,
    Now, Outputs, Peer, Registration, Request,
};
pub use limits::{Limit, LimitHits, Limits};
pub use outbound::{Delivery, Outbound, OutboundPublish, Sendable};
pub use rights::TopicRights;
