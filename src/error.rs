//! The crate's error: one variant per layer that can stop the broker from starting or running.

use crate::config::ConfigError;
use crate::store::StoreError;

/// Why the broker cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store cannot be opened or used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A socket or thread could not be set up.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The broker stopped before it finished starting.
    #[error("the broker stopped while starting")]
    Stopped,
    /// A topic name or filter given to the in-process API is invalid.
    #[error(transparent)]
    Topic(#[from] crate::topic::TopicError),
    /// The broker refused an in-process subscription (its store could not record it, for example).
    #[error("the broker refused the subscription to {0}")]
    SubscriptionRefused(String),
    /// The broker is not running (an in-process call on a broker that shut down).
    #[error("the broker is not running")]
    NotRunning,
    /// Properties given to the in-process API that no PUBLISH may carry (a string too long, a Payload
    /// Format Indicator above 1).
    #[error(transparent)]
    Properties(#[from] crate::codec::EncodeError),
}
