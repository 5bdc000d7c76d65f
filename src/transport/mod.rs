//! Transports (TCP, TLS, WebSocket): turn a byte stream from the network into a session. Everything above them is the same for all.

pub mod reader;
pub mod tcp;
pub mod tls;
pub mod ws;
