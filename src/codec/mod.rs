//! MQTT wire format: packets, pure decode/encode functions and the tokio-util codec over them.
//! Owns framing and field validation; never does I/O and knows nothing of sessions or routing.

pub mod packet;

pub use packet::*;
