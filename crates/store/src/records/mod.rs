//! Plain record types: what goes into the store and what comes back out.
//! They hold no database handles, so every backend shares them.

pub mod audit;
pub mod batch;
pub mod catalog;
pub mod fair_share;
pub mod image;
pub mod job;
pub mod notify;
pub mod queue;
pub mod review;
pub mod rollout;
pub mod tenancy;
pub mod usage;
pub mod worker;
