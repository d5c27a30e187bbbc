//! Number normalisation on real-world formats, and the index's ranking,
//! fallback and in-place updates.

use chrono::{TimeZone, Utc};
use fiche_matcher::{
    format_display, format_international, format_national, normalise, Confidence, CustomerId,
    Index, NumberKind, NumberPolicy, Timestamp,
};

fn e164(s: &str) -> NumberKind {
    NumberKind::E164(s.to_owned())
}
fn ext(s: &str) -> NumberKind {
    NumberKind::Extension(s.to_owned())
}
fn invalid(s: &str) -> NumberKind {
    NumberKind::Invalid(s.to_owned())
}

#[track_caller]
fn check_with(policy: &NumberPolicy, input: &str, expected: NumberKind) {
    let got = normalise(input, policy);
    assert_eq!(got, expected, "normalise({input:?})");
}

#[track_caller]
fn check(input: &str, expected: NumberKind) {
    check_with(&NumberPolicy::default(), input, expected);
}

#[test]
fn french_formats() {
    let mobile = e164("+33612345678");
    for input in [
        "06 12 34 56 78",
        "0612345678",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "06/12/34/56/78",
        " 06 12 34 56 78 ",
        "06\u{a0}12\u{a0}34\u{a0}56\u{a0}78",
        "+33 6 12 34 56 78",
        "+33 (0)6 12 34 56 78",
        "+33(0)612345678",
        "0033 6 12 34 56 78",
        "0033612345678",
        "+33612345678",
        "33612345678",
        "612345678",
        "(0)6 12 34 56 78",
        "tel:+33612345678",
        "tel:+33-6-12-34-56-78;phone-context=example.com",
        "sip:0612345678@10.0.0.1",
        "sip:+33612345678@pbx.example.com;user=phone",
        "<sip:0612345678@pbx>",
        "\"Claire\" <sip:+33612345678@pbx.example.com>",
        "SIP:0612345678@PBX",
    ] {
        check(input, mobile.clone());
    }
    check("01 42 68 53 00", e164("+33142685300"));
    check("09 70 80 90 00", e164("+33970809000"));
    check("0800 123 456", e164("+33800123456"));
    check("08 92 68 00 00", e164("+33892680000"));
}

#[test]
fn overseas_france() {
    // Réunion, Guadeloupe, Martinique, Guyane, Mayotte: national "0" numbers
    // that belong to other country codes.
    check("0262 12 34 56", e164("+262262123456"));
    check("0692 12 34 56", e164("+262692123456"));
    check("0590 12 34 56", e164("+590590123456"));
    check("0690 12 34 56", e164("+590690123456"));
    check("0596 70 12 34", e164("+596596701234"));
    check("0696 12 34 56", e164("+596696123456"));
    check("0594 12 34 56", e164("+594594123456"));
    check("0639 01 23 45", e164("+262639012345"));
    check("+262 692 12 34 56", e164("+262692123456"));
    // New Caledonia and Polynesia have their own 6-digit plans.
    check("+687 75 12 34", e164("+687751234"));
}

#[test]
fn international_formats() {
    check("+1 415 555 2671", e164("+14155552671"));
    check("+1 (415) 555-2671", e164("+14155552671"));
    check("001 415 555 2671", e164("+14155552671"));
    check("+44 20 7946 0958", e164("+442079460958"));
    check("+44 (0)20 7946 0958", e164("+442079460958"));
    check("0044 20 7946 0958", e164("+442079460958"));
    check("+49 30 123456", e164("+4930123456"));
    check("+32 2 555 12 12", e164("+3225551212"));
    check("0032 2 555 12 12", e164("+3225551212"));
    check("+32 470 12 34 56", e164("+32470123456"));
    check("+41 44 668 18 00", e164("+41446681800"));
    check("0041 79 123 45 67", e164("+41791234567"));
    check("+352 621 123 456", e164("+352621123456"));
    check("+212 6 12 34 56 78", e164("+212612345678"));
}

#[test]
fn extensions_and_service_numbers() {
    check("201", ext("201"));
    check("2001", ext("2001"));
    check("sip:201@pbx.local", ext("201"));
    // Short service numbers are indistinguishable from extensions by length;
    // both are "not a customer".
    check("3631", ext("3631"));
    check("15", ext("15"));
    let short = NumberPolicy {
        extension_max_len: 3,
        ..NumberPolicy::default()
    };
    check_with(&short, "2001", invalid("2001"));
    check_with(&short, "201", ext("201"));
}

#[test]
fn withheld() {
    for input in [
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "ANONYMOUS",
        "<unknown>",
        "unknown",
        "restricted",
        "private",
        "Privé",
        "sip:anonymous@anonymous.invalid",
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
    ] {
        check(input, NumberKind::Withheld);
    }
}

#[test]
fn garbage() {
    check("abc", invalid("abc"));
    check("06 12 34 56 7x", invalid("06 12 34 56 7x"));
    check("++33612345678", invalid("++33612345678"));
    check("+33 6 12", invalid("+33 6 12"));
    check("0000000000", invalid("0000000000"));
    check("1234567890123456789", invalid("1234567890123456789"));
    check("06 12 34 56 78 90 12", invalid("06 12 34 56 78 90 12"));
    check("+", invalid("+"));
    let long = "1".repeat(500);
    assert!(
        matches!(normalise(&long, &NumberPolicy::default()), NumberKind::Invalid(s) if s.len() <= 128)
    );
    check("😀", invalid("😀"));
}

#[test]
fn outside_line_prefix_is_stripped_first() {
    let pbx = NumberPolicy {
        outside_line_prefix: Some("0".to_owned()),
        ..NumberPolicy::default()
    };
    check_with(&pbx, "00612345678", e164("+33612345678"));
    check_with(&pbx, "00142685300", e164("+33142685300"));
    // International numbers behind the outside-line prefix.
    check_with(&pbx, "00033612345678", e164("+33612345678"));
    check_with(&pbx, "0004930123456", e164("+4930123456"));
    // Numbers already without the prefix still work.
    check_with(&pbx, "0612345678", e164("+33612345678"));
    check_with(&pbx, "0033612345678", e164("+33612345678"));
    check_with(&pbx, "+33612345678", e164("+33612345678"));
    check_with(&pbx, "201", ext("201"));
}

#[test]
fn policy_validation() {
    assert!(NumberPolicy::default().validate().is_ok());
    let bad_region = NumberPolicy {
        default_region: "XX".to_owned(),
        ..NumberPolicy::default()
    };
    assert!(bad_region.validate().is_err());
    let bad_prefix = NumberPolicy {
        outside_line_prefix: Some("9a".to_owned()),
        ..NumberPolicy::default()
    };
    assert!(bad_prefix.validate().is_err());
    let belgium = NumberPolicy {
        default_region: "be".to_owned(),
        ..NumberPolicy::default()
    };
    check_with(&belgium, "02 555 12 12", e164("+3225551212"));
    check_with(&belgium, "0470 12 34 56", e164("+32470123456"));
}

#[test]
fn display_forms() {
    assert_eq!(
        format_national("+33612345678").as_deref(),
        Some("06 12 34 56 78")
    );
    assert_eq!(
        format_international("+33612345678").as_deref(),
        Some("+33 6 12 34 56 78")
    );
    assert_eq!(format_national("0612345678"), None);
    let fr = NumberPolicy::default();
    assert_eq!(format_display("+33142685300", &fr), "01 42 68 53 00");
    assert_eq!(format_display("+442079460958", &fr), "+44 20 7946 0958");
    assert_eq!(format_display("garbage", &fr), "garbage");
}

fn at(day: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, day, 9, 0, 0).unwrap()
}

fn ids(matches: &[fiche_matcher::Match]) -> Vec<(i64, Confidence)> {
    matches
        .iter()
        .map(|m| (m.customer_id.0, m.confidence))
        .collect()
}

#[test]
fn shared_number_returns_everyone_most_recent_first() {
    let index = Index::build(
        [
            (CustomerId(1), "+33142685300", Some(at(1))),
            (CustomerId(2), "+33142685300", Some(at(20))),
            (CustomerId(3), "+33142685300", None),
            (CustomerId(4), "+33142685300", Some(at(10))),
            (CustomerId(5), "+33612345678", Some(at(22))),
        ],
        0,
    );
    let found = index.lookup(&e164("+33142685300"));
    assert_eq!(
        ids(&found),
        vec![
            (2, Confidence::Exact),
            (4, Confidence::Exact),
            (1, Confidence::Exact),
            (3, Confidence::Exact)
        ]
    );
    assert_eq!(found[0].last_contact, Some(at(20)));
    // A later row for the same customer with a newer contact re-ranks it on
    // all its numbers.
    let mut index = index;
    index.insert(CustomerId(3), "+33999999999", Some(at(25)));
    assert_eq!(
        index.lookup(&e164("+33142685300"))[0].customer_id,
        CustomerId(3)
    );
}

#[test]
fn badly_stored_numbers_match_on_last_digits_with_lower_confidence() {
    let index = Index::build(
        [
            (CustomerId(1), "+33612345678", None),
            // Stored with the Belgian code by mistake.
            (CustomerId(2), "+32612345678", Some(at(15))),
            // Stored as typed, never normalised.
            (CustomerId(3), "06-12-34-56-78 (perso)", Some(at(16))),
        ],
        0,
    );
    // An exact match wins alone: guesses are not mixed with certainties.
    assert_eq!(
        ids(&index.lookup(&e164("+33612345678"))),
        vec![(1, Confidence::Exact)]
    );
    // Without the exact owner, the badly stored numbers are offered.
    let mut index = index;
    index.remove_customer(CustomerId(1));
    assert_eq!(
        ids(&index.lookup(&e164("+33612345678"))),
        vec![(3, Confidence::LastDigits), (2, Confidence::LastDigits)]
    );
    // An unparseable caller number still finds the fallback candidates.
    let found = index.lookup(&invalid("+330612345678"));
    assert!(found.iter().all(|m| m.confidence == Confidence::LastDigits));
    assert_eq!(found.len(), 2);
}

#[test]
fn extensions_and_withheld_match_nobody() {
    let index = Index::build([(CustomerId(1), "+33612345678", None)], 1);
    assert!(index.lookup(&ext("201")).is_empty());
    assert!(index.lookup(&NumberKind::Withheld).is_empty());
    assert!(index.lookup(&e164("+33699999999")).is_empty());
}

#[test]
fn updates_are_visible_without_rebuild() {
    let mut index = Index::new();
    let number = e164("+33612345678");
    assert!(index.lookup(&number).is_empty());

    assert!(index.insert(CustomerId(7), "+33612345678", None));
    assert!(index.insert(CustomerId(8), "+33612345678", Some(at(3))));
    assert_eq!(
        ids(&index.lookup(&number)),
        vec![(8, Confidence::Exact), (7, Confidence::Exact)]
    );

    index.touch(CustomerId(7), at(5));
    assert_eq!(
        ids(&index.lookup(&number)),
        vec![(7, Confidence::Exact), (8, Confidence::Exact)]
    );
    // An older contact does not move a customer back.
    index.touch(CustomerId(7), at(1));
    assert_eq!(index.lookup(&number)[0].last_contact, Some(at(5)));

    index.remove(CustomerId(7), "+33612345678");
    assert_eq!(ids(&index.lookup(&number)), vec![(8, Confidence::Exact)]);

    assert!(index.insert(CustomerId(8), "+442079460958", None));
    index.remove_customer(CustomerId(8));
    assert!(index.lookup(&number).is_empty());
    assert!(index.lookup_e164("+442079460958").is_empty());
    assert!(index.is_empty());
    assert_eq!(index.number_count(), 0);

    assert!(!index.insert(CustomerId(9), "no digits", None));
}

#[test]
fn removing_one_number_keeps_the_others_and_the_fallback() {
    let mut index = Index::new();
    index.insert(CustomerId(1), "+33612345678", None);
    index.insert(CustomerId(1), "+33142685300", None);
    index.insert(CustomerId(2), "0612345678", None);
    index.remove(CustomerId(1), "+33612345678");
    assert_eq!(
        ids(&index.lookup_e164("+33142685300")),
        vec![(1, Confidence::Exact)]
    );
    assert_eq!(
        ids(&index.lookup_e164("+33612345678")),
        vec![(2, Confidence::LastDigits)]
    );
    // Removing a number the customer does not have changes nothing.
    index.remove(CustomerId(2), "+33142685300");
    assert_eq!(
        ids(&index.lookup_e164("+33142685300")),
        vec![(1, Confidence::Exact)]
    );
    assert_eq!(index.customer_count(), 2);
}

#[test]
fn same_number_inserted_twice_is_one_entry() {
    let mut index = Index::new();
    index.insert(CustomerId(1), "+33612345678", None);
    index.insert(CustomerId(1), "+33612345678", Some(at(2)));
    assert_eq!(index.lookup_e164("+33612345678").len(), 1);
    index.remove(CustomerId(1), "+33612345678");
    assert!(index.lookup_e164("+33612345678").is_empty());
}

/// Whatever a stranger puts in a caller-id, normalising it returns.
#[test]
fn arbitrary_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let alphabet: Vec<char> = "0123456789+()-. /:@;<>\"'#*pPtelsipanonymous(0)é😀\u{a0}\0"
        .chars()
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let policies = [
        NumberPolicy::default(),
        NumberPolicy {
            outside_line_prefix: Some("0".to_owned()),
            extension_max_len: 0,
            ..NumberPolicy::default()
        },
        NumberPolicy {
            default_region: "nowhere".to_owned(),
            ..NumberPolicy::default()
        },
    ];
    let mut index = Index::new();
    for i in 0..20_000 {
        let len = rng.gen_range(0..40);
        let input: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let kind = normalise(&input, &policies[i % policies.len()]);
        if let NumberKind::E164(e164) = &kind {
            assert!(
                e164.starts_with('+') && e164.len() <= 16,
                "{input:?} -> {e164}"
            );
            assert!(format_international(e164).is_some());
        }
        index.insert(CustomerId(i as i64), &input, None);
        let _ = index.lookup(&kind);
        let _ = format_display(&input, &policies[0]);
    }
}
