//! Odoo for Fiche.
//!
//! - [`wire`]: the two external APIs' envelopes and error objects, with no IO:
//!   JSON-RPC 2.0 on `/jsonrpc` (`common.version`, `common.authenticate`,
//!   `object.execute_kw`; Odoo 16 to 18) and JSON-2 (`POST /json/2/<model>/<method>`
//!   with `Authorization: bearer <key>`; Odoo 19 and later).
//! - [`client`]: one HTTP client that detects the version and speaks the right API.
//! - [`check`]: what `fiche odoo check` prints: version, models, fields, rights.
//! - [`partners`]: `res.partner` records to Fiche customers (pure).
//! - [`sync`]: the first full import and the `write_date` poll, into the store.
//!
//! **API boundary:** Odoo's answers are untrusted input: every value is read
//! through typed accessors that tolerate `false` for "empty" (Odoo's JSON for an
//! unset field), and every error names the model and, when Odoo says it, the field.

pub mod check;
pub mod client;
pub mod config;
pub mod error;
pub mod partners;
pub mod sync;
pub mod tickets;
pub mod wire;

pub use client::OdooClient;
pub use config::OdooConfig;
pub use error::{OdooError, Result};
pub use wire::{Protocol, ServerVersion};
