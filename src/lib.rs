pub mod codec;
pub mod message;
pub mod store;
pub mod topic;
