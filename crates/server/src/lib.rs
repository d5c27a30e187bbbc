//! The `fiche` server as a library: configuration, the call-event pipeline, the
//! HTTP API and websocket, and the `serve` entry point that wires the phone-system
//! listeners to them. `main.rs` only parses the command line and calls in here,
//! so tests drive the app without a process.

pub mod auth;
pub mod authz;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod cti;
pub mod customer_memory;
pub mod customers_sync;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod odoo;
mod outbox;
pub mod pipeline;
pub mod serve;
pub mod tickets;
pub mod webhooks;
