//! frontdesk

pub mod policy;
