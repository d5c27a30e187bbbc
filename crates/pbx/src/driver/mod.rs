//! Tokio drivers: the tasks that own the sockets of the phone-system sources.

pub mod ami;
pub mod hep;
