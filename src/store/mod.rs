//! Durable state on redb (being written).
