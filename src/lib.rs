//! harbormq: a durable MQTT 3.1.1 / 3.1 broker on actix actors and redb.
//!
//! The map, from the wire inwards:
//! - [`codec`]: MQTT packets and their validation; bytes in, `Packet` out, and back. Pure.
//! - [`topic`]: topic names, topic filters and the subscription trie. Pure.
//! - [`message`]: the application message shared by every session it reaches.
//! - [`protocol`]: every MQTT rule of one connection as a state machine without I/O, driven by its owner.
//! - [`store`]: durable state on redb, written by one thread with group commit.
//! - [`broker`]: the actors (a session around each connection's protocol core, the router with its
//!   credit-based flow control, the retained store) and [`Broker`] / [`BrokerHandle`] to run them.
//! - [`transport`]: TCP, TLS and WebSocket byte streams into sessions.
//! - [`tls`]: certificates and keys read, checked and reloaded, client certificate identities.
//! - [`web`]: what an actix-web app mounts: the MQTT-over-WebSocket route.
//! - [`auth`]: password files, ACL files and the HTTP authentication service, each as hooks.
//! - [`config`]: every setting, its default and its validation; [`reload`]: files read again in place.
//! - [`loadgen`]: `harbormq bench`, a load generator for any MQTT broker.
//! - [`admin`]: the HTTP admin API and the `sessions` / `retained` / `stats` commands, live or offline.
//! - [`cli`]: the `harbormq` command line.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod codec;
pub mod config;
pub mod error;
pub mod loadgen;
pub mod message;
pub mod protocol;
pub mod reload;
pub mod store;
pub mod tls;
pub mod topic;
pub mod transport;
pub mod web;

pub use broker::hooks::Hooks;
pub use broker::{BackgroundBroker, Broker, BrokerHandle};
pub use config::Config;
pub use error::Error;
