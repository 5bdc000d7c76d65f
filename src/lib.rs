pub mod codec;
pub mod topic;
