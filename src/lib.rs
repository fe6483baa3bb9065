//! frontdesk

pub mod jose;
