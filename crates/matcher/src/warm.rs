//! Start-up warm-up of the numbering-plan data.
//!
//! The `phonenumber` crate decodes its metadata database on first use and
//! compiles each region's regexes the first time they match. Left lazy, that
//! work (about a hundred milliseconds) lands on the first ringing call, whose
//! pop and every pop queued behind it wait for it.

use crate::number::{format_display, format_international, format_national, normalise};
use crate::NumberPolicy;

/// A French mobile number, the home of the fast path.
const FRENCH_SAMPLE: &str = "06 12 34 56 78";

/// Loads the numbering-plan data and compiles the regexes used to read and
/// format numbers of `policy`'s region (and French ones), so that the first
/// call does not pay for it. Takes tens of milliseconds; call it once at start.
pub fn warm_up(policy: &NumberPolicy) {
    let database = &*phonenumber::metadata::DATABASE;
    let region = policy.default_region.to_ascii_uppercase();
    let example = database.by_id(region.as_str()).and_then(|meta| {
        let descriptors = meta.descriptors();
        descriptors
            .mobile()
            .or(descriptors.fixed_line())
            .and_then(|d| d.example())
            .map(|national| format!("+{}{national}", meta.country_code()))
    });
    for sample in example.as_deref().into_iter().chain([FRENCH_SAMPLE]) {
        if let Some(e164) = normalise(sample, policy).e164() {
            // Both forms: a pop shows the national one, the board may show either.
            drop(format_display(e164, policy));
            drop(format_national(e164));
            drop(format_international(e164));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn after_warm_up_numbers_of_the_region_still_read_and_format_the_same() {
        let policy = NumberPolicy::default();
        warm_up(&policy);
        let started = Instant::now();
        assert_eq!(
            normalise("06 12 34 56 78", &policy).e164(),
            Some("+33612345678")
        );
        assert_eq!(format_display("+33612345678", &policy), "06 12 34 56 78");
        // Not a timed assertion: only printed, for whoever reads `--nocapture`.
        println!("first call after warm-up: {:?}", started.elapsed());

        let belgian = NumberPolicy {
            default_region: "be".to_owned(),
            ..NumberPolicy::default()
        };
        warm_up(&belgian);
        assert_eq!(
            normalise("0470 12 34 56", &belgian).e164(),
            Some("+32470123456")
        );
        // A region the data does not know (refused by the config check) is no panic.
        warm_up(&NumberPolicy {
            default_region: "ZZ".to_owned(),
            ..NumberPolicy::default()
        });
    }
}
