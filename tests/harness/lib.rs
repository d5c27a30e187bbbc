//! Test harness for the end-to-end suites: starts the `fiche` binary, the
//! Kamailio test PBX and sipp phones on loopback ports, plays the scenarios of
//! `sip-test-scripts/`, and reads back what Fiche saw (websocket events and
//! `/api/calls/live`).
//!
//! Every process started here runs under `timeout` and is stopped by PID when
//! its guard drops, so a failing or panicking test leaves nothing behind.

pub mod ami_server;
pub mod auth;
pub mod events;
pub mod fiche_ami;
pub mod http;
pub mod odoo;
pub mod pg;
pub mod process;
pub mod recordings;
pub mod testbed;
pub mod webhook_receiver;
pub mod ws;

pub use testbed::{Played, Ports, SippOutcome, Testbed};

/// Serialises the scenarios of one test binary: each starts its own testbed on
/// its own ports, but the machine is small and sipp timers are real time.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
