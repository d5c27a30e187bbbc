//! Lookup latency and build time of the number index at 1,000,000 numbers,
//! plus the cost of normalising one number.
//!
//! Criterion reports means; the tail latency the issue asks for (p99) is
//! measured first, by timing 1,000,000 single lookups with `Instant` and
//! printing percentiles. Each of those samples includes the cost of one
//! `Instant::now()` pair (printed too), so they are an upper bound.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{BatchSize, Criterion};
use fiche_matcher::{normalise, CustomerId, Index, NumberKind, NumberPolicy, Timestamp};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const NUMBERS: usize = 1_000_000;

/// 1,000,000 (customer, number, last contact) rows: French mobiles and
/// landlines, one customer in twenty sharing a switchboard number.
fn rows() -> Vec<(CustomerId, String, Option<Timestamp>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut out = Vec::with_capacity(NUMBERS);
    let mut customer = 0i64;
    while out.len() < NUMBERS {
        customer += 1;
        let national: u64 = match rng.gen_range(0..3) {
            0 => 600_000_000 + rng.gen_range(0..100_000_000),
            1 => 700_000_000 + rng.gen_range(0..100_000_000),
            _ => 100_000_000 + rng.gen_range(0..500_000_000),
        };
        let number = if customer % 20 == 0 && !out.is_empty() {
            let (_, shared, _): &(CustomerId, String, Option<Timestamp>) =
                &out[rng.gen_range(0..out.len())];
            shared.clone()
        } else {
            format!("+33{national}")
        };
        let contact = (rng.gen_range(0..4) > 0)
            .then(|| base + chrono::Duration::seconds(rng.gen_range(0..30_000_000)));
        out.push((CustomerId(customer), number, contact));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn print_percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "{label}: n={} p50={:?} p90={:?} p99={:?} p99.9={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples[samples.len() - 1],
    );
}

fn tail_latency(index: &Index, queries: &[NumberKind]) {
    let mut found = Vec::with_capacity(8);
    let clock: Vec<Duration> = (0..100_000)
        .map(|_| {
            let start = Instant::now();
            black_box(&found);
            start.elapsed()
        })
        .collect();
    print_percentiles("timer overhead (empty sample)", clock);
    for (label, alloc) in [
        ("lookup_into (reused Vec)", false),
        ("lookup (new Vec)", true),
    ] {
        let samples: Vec<Duration> = queries
            .iter()
            .map(|query| {
                let start = Instant::now();
                if alloc {
                    black_box(index.lookup(black_box(query)));
                } else {
                    index.lookup_into(black_box(query), &mut found);
                    black_box(&found);
                }
                start.elapsed()
            })
            .collect();
        print_percentiles(label, samples);
    }
}

fn main() {
    let rows = rows();
    let started = Instant::now();
    let index = Index::build(
        rows.iter().map(|(c, n, t)| (*c, n.as_str(), *t)),
        rows.len(),
    );
    println!(
        "index build (one run): {} rows, {} numbers, {} customers in {:?}",
        rows.len(),
        index.number_count(),
        index.customer_count(),
        started.elapsed()
    );

    let mut rng = StdRng::seed_from_u64(11);
    let mut queries: Vec<NumberKind> = rows
        .iter()
        .map(|(_, n, _)| NumberKind::E164(n.clone()))
        .collect();
    queries.shuffle(&mut rng);
    // Re-allocate in access order: a caller's number is hot in cache when
    // it is looked up, the query strings should not add a cache miss.
    let queries: Vec<NumberKind> = queries.to_vec();
    let misses: Vec<NumberKind> = (0..NUMBERS / 10)
        .map(|_| NumberKind::E164(format!("+4930{}", rng.gen_range(1_000_000..9_999_999))))
        .collect();
    tail_latency(&index, &queries);
    print_percentiles(
        "lookup of unknown numbers",
        misses
            .iter()
            .map(|query| {
                let start = Instant::now();
                black_box(index.lookup(black_box(query)));
                start.elapsed()
            })
            .collect(),
    );

    let mut criterion = Criterion::default().configure_from_args();
    let mut next = 0usize;
    criterion.bench_function("lookup 1M indexed (hit)", |b| {
        b.iter(|| {
            next = (next + 1) % queries.len();
            index.lookup(black_box(&queries[next]))
        })
    });
    criterion.bench_function("lookup 1M indexed (miss)", |b| {
        b.iter(|| {
            next = (next + 1) % misses.len();
            index.lookup(black_box(&misses[next]))
        })
    });
    let policy = NumberPolicy::default();
    let raws = [
        "06 12 34 56 78",
        "+33 (0)1 42 68 53 00",
        "0033612345678",
        "+44 20 7946 0958",
    ];
    criterion.bench_function("normalise (mixed formats)", |b| {
        b.iter(|| {
            next = (next + 1) % raws.len();
            normalise(black_box(raws[next]), &policy)
        })
    });
    for raw in raws {
        criterion.bench_function(&format!("normalise {raw:?}"), |b| {
            b.iter(|| normalise(black_box(raw), &policy))
        });
    }
    criterion.bench_function("phonenumber::parse alone (0612345678, FR)", |b| {
        b.iter(|| phonenumber::parse(Some(phonenumber::country::Id::FR), black_box("0612345678")))
    });
    let parsed = phonenumber::parse(Some(phonenumber::country::Id::FR), "0612345678").unwrap();
    criterion.bench_function("phonenumber::is_valid alone", |b| {
        b.iter(|| phonenumber::is_valid(black_box(&parsed)))
    });
    let mut group = criterion.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("Index::build 1M numbers", |b| {
        b.iter_batched(
            || (),
            |()| {
                Index::build(
                    rows.iter().map(|(c, n, t)| (*c, n.as_str(), *t)),
                    rows.len(),
                )
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    criterion.final_summary();
}
