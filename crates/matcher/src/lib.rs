//! Caller matching for Fiche: normalise whatever number a phone system or a
//! spreadsheet gives into E.164 (or an extension, a withheld caller, an
//! invalid input), and find the customers who own it in microseconds through
//! an in-memory index that is updated in place as customers change.
//!
//! - [`normalise`] / [`NumberPolicy`] / [`NumberKind`]: number parsing.
//! - [`Index`]: E.164 → customers, ranked, with a last-9-digits fallback.
//! - [`format_national`], [`format_international`], [`format_display`]: display.

pub mod index;
pub mod number;
pub mod warm;

pub use index::{Confidence, CustomerId, Index, Match};
pub use number::{
    format_display, format_international, format_national, normalise, NumberKind, NumberPolicy,
    PolicyError,
};

/// Points in time, as in the rest of Fiche (`fiche_pbx::model::Timestamp`).
pub type Timestamp = chrono::DateTime<chrono::Utc>;
