//! Turning whatever a phone system or a spreadsheet calls "a number" into one
//! canonical form: E.164 for real numbers, and explicit kinds for internal
//! extensions, withheld callers and garbage.
//!
//! The heavy lifting (numbering plans, trunk prefixes, validity ranges) is done
//! by the `phonenumber` crate with a default region; this module only cleans
//! the input first (URIs, separators, the "(0)" trunk digit, a PBX's
//! outside-line prefix) and decides what is an extension or withheld.

use std::str::FromStr;

use phonenumber::country::Id as RegionId;
use phonenumber::Mode;

/// Inputs longer than this are not phone numbers; they are rejected before
/// any parsing so that a hostile header cannot make the parser work hard.
const MAX_INPUT_LEN: usize = 128;

/// E.164 allows at most 15 digits after the `+`.
const MAX_E164_DIGITS: usize = 15;

/// How numbers are read on this installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPolicy {
    /// ISO 3166 region used for numbers written without a country code, e.g. "FR".
    pub default_region: String,
    /// Digits some PBXs put before the national number of outside callers
    /// (e.g. "0", giving "00612345678"); stripped first when present.
    pub outside_line_prefix: Option<String>,
    /// Numbers with at most this many digits (and no `+`) are internal
    /// extensions, not customers.
    pub extension_max_len: usize,
}

impl Default for NumberPolicy {
    /// France, no outside-line prefix, extensions of up to 5 digits.
    fn default() -> Self {
        Self {
            default_region: "FR".to_owned(),
            outside_line_prefix: None,
            extension_max_len: 5,
        }
    }
}

/// A policy that cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// `default_region` is not a region known to the numbering-plan data.
    #[error("default_region {0:?} is not a known ISO 3166 region code")]
    UnknownRegion(String),
    /// `outside_line_prefix` must be digits only.
    #[error("outside_line_prefix {0:?} must contain digits only")]
    BadOutsideLinePrefix(String),
}

impl NumberPolicy {
    /// Checks the policy once at configuration time, so that `normalise`
    /// never has to report a configuration mistake as a bad number.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.region().is_none() {
            return Err(PolicyError::UnknownRegion(self.default_region.clone()));
        }
        if let Some(prefix) = &self.outside_line_prefix {
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PolicyError::BadOutsideLinePrefix(prefix.clone()));
            }
        }
        Ok(())
    }

    fn region(&self) -> Option<RegionId> {
        RegionId::from_str(&self.default_region.to_ascii_uppercase()).ok()
    }
}

/// What a number turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NumberKind {
    /// A valid public number, as "+33612345678".
    E164(String),
    /// A short internal number (an agent's extension, a queue, a service code).
    Extension(String),
    /// The caller hid their number ("anonymous", empty, "restricted"…).
    Withheld,
    /// Not a usable number; holds the trimmed input (bounded in length) so
    /// that it can still be shown or fallback-matched on its digits.
    Invalid(String),
}

impl NumberKind {
    /// The E.164 form, if this is a public number.
    pub fn e164(&self) -> Option<&str> {
        match self {
            NumberKind::E164(s) => Some(s),
            _ => None,
        }
    }
}

/// Words PBXs and carriers use for a hidden caller, compared in lowercase.
const WITHHELD_WORDS: &[&str] = &[
    "anonymous",
    "anonyme",
    "unknown",
    "<unknown>",
    "inconnu",
    "restricted",
    "private",
    "privé",
    "prive",
    "withheld",
    "unavailable",
    "masqué",
    "masque",
    "numéro masqué",
    "numero masque",
    "null",
    "none",
    "-",
];

/// Normalises a caller or customer number according to `policy`.
///
/// Never panics and never fails: anything that is not a number comes back
/// as [`NumberKind::Invalid`].
pub fn normalise(raw: &str, policy: &NumberPolicy) -> NumberKind {
    let trimmed = raw.trim();
    if trimmed.len() > MAX_INPUT_LEN {
        return NumberKind::Invalid(truncate(trimmed, MAX_INPUT_LEN).to_owned());
    }
    let user = uri_user_part(trimmed).trim();
    if is_withheld(user) {
        return NumberKind::Withheld;
    }
    let Some(dialled) = clean(user) else {
        return NumberKind::Invalid(trimmed.to_owned());
    };
    if dialled.digits.is_empty() {
        return NumberKind::Invalid(trimmed.to_owned());
    }
    if !dialled.plus && dialled.digits.len() <= policy.extension_max_len {
        return NumberKind::Extension(dialled.digits);
    }
    let region = policy.region();
    let invalid = || NumberKind::Invalid(trimmed.to_owned());

    if dialled.plus {
        if region == Some(RegionId::FR) {
            if let Some(found) = dialled.digits.strip_prefix("33").and_then(french_fast_path) {
                return found;
            }
        }
        return parse_valid(&format!("+{}", dialled.digits), None).unwrap_or_else(invalid);
    }
    if let Some(prefix) = policy.outside_line_prefix.as_deref() {
        if let Some(rest) = dialled.digits.strip_prefix(prefix) {
            if rest.len() > policy.extension_max_len {
                if let Some(found) = parse_digits(rest, region) {
                    return found;
                }
            }
        }
    }
    parse_digits(&dialled.digits, region).unwrap_or_else(invalid)
}

/// Parses digits dialled without `+`: as a national number of the default
/// region (which also covers its international prefix, "00" in Europe), and
/// failing that as a full international number whose `+` was lost
/// ("33612345678").
fn parse_digits(digits: &str, region: Option<RegionId>) -> Option<NumberKind> {
    if let Some(home) = region {
        if let Some(overseas) = overseas_region(home, digits) {
            if let Some(found) = parse_valid(digits, Some(overseas)) {
                return Some(found);
            }
        }
        if home == RegionId::FR {
            let national = if digits.len() == 10 {
                digits.strip_prefix('0')
            } else if digits.len() == 13 {
                digits.strip_prefix("0033")
            } else {
                None
            };
            if let Some(found) = national.and_then(french_fast_path) {
                return Some(found);
            }
        }
        if let Some(found) = parse_valid(digits, region) {
            return Some(found);
        }
    }
    if digits.starts_with('0') {
        return None;
    }
    parse_valid(&format!("+{digits}"), None)
}

/// The overseas department a French national number belongs to. From
/// mainland France, "0262 …" is Réunion (+262) and "0596 …" Martinique
/// (+596): dialled as national numbers, they have country codes of their
/// own, and some of their ranges also look valid as +33 numbers in the
/// numbering-plan data, so the overseas reading is tried first.
fn overseas_region(home: RegionId, digits: &str) -> Option<RegionId> {
    use RegionId::*;
    if home != FR || digits.len() != 10 {
        return None;
    }
    match digits.get(..4)? {
        "0262" | "0263" | "0692" | "0693" => Some(RE),
        "0269" | "0639" => Some(YT),
        "0590" | "0690" | "0691" => Some(GP),
        "0594" | "0694" => Some(GF),
        "0596" | "0696" | "0697" => Some(MQ),
        "0508" => Some(PM),
        _ => None,
    }
}

/// Most numbers an import or a French PBX sees are French; checking them
/// by hand skips the regex-driven parse and validation (about 3.5 µs of
/// the 4 µs a number costs). `national` is the 9-digit significant number;
/// the rules are libphonenumber's FR ranges (fixed line, mobile, toll-free,
/// premium, shared cost, VoIP, UAN) as of metadata 9.0.33, and a unit test
/// checks them against the crate on every 5-digit prefix. What this
/// refuses still goes the slow way (overseas departments, odd lengths).
fn french_fast_path(national: &str) -> Option<NumberKind> {
    let d = national.as_bytes();
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (d0, d1, d2, d3, d4) = (d[0], d[1], d[2], d[3], d[4]);
    let valid = match d0 {
        b'1' | b'3' | b'9' => true,
        b'2' => match d1 {
            b'6' => d2 != b'2',
            _ => true,
        },
        b'4' => d1 != b'0',
        b'5' => match d1 {
            b'9' => d2 != b'0' && d2 != b'4',
            _ => true,
        },
        b'6' => match d1 {
            b'3' => d2 != b'9',
            b'9' => matches!(d2, b'5' | b'8' | b'9'),
            _ => true,
        },
        b'7' => d1 >= b'3',
        b'8' => match d1 {
            b'3' => d2 != b'6' || !(d3 == b'0' && matches!(d4, b'4' | b'5')),
            b'4' => matches!(d2, b'0' | b'2' | b'4'),
            b'7' => false,
            _ => true,
        },
        _ => false,
    };
    valid.then(|| NumberKind::E164(format!("+33{national}")))
}

fn parse_valid(text: &str, region: Option<RegionId>) -> Option<NumberKind> {
    let number = phonenumber::parse(region, text).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    // Written by hand: the crate's E.164 formatter first runs the national
    // formatting rules (regexes) for nothing, which doubled import time.
    let e164 = format!("+{}{}", number.code().value(), number.national());
    // The crate keeps national numbers as u64; a bogus parse could give more
    // than 15 digits, which the index cannot key.
    if e164.len() > MAX_E164_DIGITS + 1 {
        return None;
    }
    Some(NumberKind::E164(e164))
}

/// The user part of `sip:`, `sips:` and `tel:` URIs (possibly inside `<>`
/// with a display name before them); other text is returned unchanged.
fn uri_user_part(text: &str) -> &str {
    let inner = match (text.find('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    let lower_starts = |prefix: &str| {
        inner
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    let rest = if lower_starts("sips:") {
        &inner[5..]
    } else if lower_starts("sip:") || lower_starts("tel:") {
        &inner[4..]
    } else {
        return inner;
    };
    let end = rest.find(['@', ';', '?']).unwrap_or(rest.len());
    &rest[..end]
}

fn is_withheld(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let lower = text.to_lowercase();
    WITHHELD_WORDS.contains(&lower.as_str())
}

/// A number with its visual separators removed.
struct Dialled {
    plus: bool,
    digits: String,
}

/// Keeps a leading `+` and the digits; drops spaces, dots, dashes, slashes
/// and brackets. The "(0)" that Europeans write after their country code
/// ("+33 (0)6…") is a trunk digit that must not be dialled, so it is dropped
/// when the number is international. Letters or other symbols make the
/// input unusable (`None`).
fn clean(text: &str) -> Option<Dialled> {
    let mut plus = false;
    let mut digits = String::with_capacity(text.len());
    let international = text.starts_with('+') || text.starts_with("00");
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if international && !digits.is_empty() && rest.starts_with("(0)") {
            rest = &rest[3..];
            continue;
        }
        match c {
            '0'..='9' => digits.push(c),
            '+' if digits.is_empty() && !plus => plus = true,
            ' ' | '.' | '-' | '/' | '(' | ')' | '\u{a0}' | '\u{202f}' | '\t' => {}
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(Dialled { plus, digits })
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// "06 12 34 56 78" for "+33612345678": the national form, as people of that
/// country write it. `None` if `e164` is not a valid E.164 number.
pub fn format_national(e164: &str) -> Option<String> {
    format_in(e164, Mode::National)
}

/// "+33 6 12 34 56 78" for "+33612345678". `None` if `e164` is not a valid
/// E.164 number.
pub fn format_international(e164: &str) -> Option<String> {
    format_in(e164, Mode::International)
}

/// The form to show an agent: national for numbers of the policy's region,
/// international for the others; the input itself if it does not parse.
pub fn format_display(e164: &str, policy: &NumberPolicy) -> String {
    let Ok(number) = phonenumber::parse(None, e164) else {
        return e164.to_owned();
    };
    let home = policy.region();
    let mode = if home.is_some() && number.country().id() == home {
        Mode::National
    } else {
        Mode::International
    };
    render(&number, mode).unwrap_or_else(|| e164.to_owned())
}

fn format_in(e164: &str, mode: Mode) -> Option<String> {
    if !e164.starts_with('+') {
        return None;
    }
    let number = phonenumber::parse(None, e164).ok()?;
    render(&number, mode)
}

/// The crate's formatter reports a country code it has no data for as a
/// `fmt::Error`, which `to_string()` would turn into a panic.
fn render(number: &phonenumber::PhoneNumber, mode: Mode) -> Option<String> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", number.format().mode(mode)).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written French ranges agree with the numbering-plan data on
    /// every 5-digit prefix (with two different endings).
    #[test]
    fn french_fast_path_agrees_with_phonenumber() {
        let mut disagreements = Vec::new();
        for prefix in 10_000..100_000u32 {
            for suffix in ["0000", "7391"] {
                let national = format!("{prefix}{suffix}");
                let fast = french_fast_path(&national).is_some();
                let slow = parse_valid(&format!("+33{national}"), None).is_some();
                if fast != slow {
                    disagreements.push(national);
                }
            }
        }
        assert!(
            disagreements.is_empty(),
            "{:?}",
            &disagreements[..disagreements.len().min(20)]
        );
    }
}
