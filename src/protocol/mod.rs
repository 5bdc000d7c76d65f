//! The per-connection MQTT rules as plain code: CONNECT checks, the outbound inflight window and the ordered
//! acknowledgement queue. No actors, no I/O, no clocks: the session actor feeds it and performs what it returns.

pub mod acks;
pub mod connect;
pub mod outbound;

pub use acks::{AckQueue, BatchId};
pub use connect::{accept_connect, ConnectDecision};
pub use outbound::{Delivery, Offer, Outbound, Sendable};
