//! Import throughput: a 100,000-row French-Excel CSV (Windows-1252, `;`,
//! two phone numbers per row in mixed formats) parsed, mapped, normalised
//! and de-duplicated in memory. The database write is not included.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use fiche_import::{read_csv, Options};

const ROWS: u32 = 100_000;

fn file() -> Vec<u8> {
    let mut text =
        String::from("Code client;Nom;Prénom;Société;Téléphone;Portable;Email;Ville\r\n");
    for n in 0..ROWS {
        let fixed = match n % 3 {
            0 => format!(
                "01 {:02} {:02} {:02} {:02}",
                n / 1_000_000 % 100,
                n / 10_000 % 100,
                n / 100 % 100,
                n % 100
            ),
            1 => format!("+33 (0)1{:08}", n + 10_000_000),
            _ => format!("00331{:08}", n + 10_000_000),
        };
        text.push_str(&format!(
            "C{n:06};Lefèvre{n};Zoé;Société d'Études {n};{fixed};06.{:02}.{:02}.{:02}.{:02};client{n}@exemple.fr;Orléans\r\n",
            n / 1_000_000 % 100,
            n / 10_000 % 100,
            n / 100 % 100,
            n % 100
        ));
    }
    encoding_rs::WINDOWS_1252.encode(&text).0.into_owned()
}

fn main() {
    let bytes = file();
    let options = Options::default();
    let started = std::time::Instant::now();
    let batch = read_csv(bytes.as_slice(), &options, &mut |_| {}).unwrap();
    println!(
        "one run: {} rows, {} records in {:?}",
        batch.rows,
        batch.records.len(),
        started.elapsed()
    );
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("import");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(ROWS)));
    group.bench_function("read_csv 100k rows (cp1252, 2 phones/row)", |b| {
        b.iter(|| {
            let batch = read_csv(black_box(bytes.as_slice()), &options, &mut |_| {}).unwrap();
            assert_eq!(batch.records.len(), ROWS as usize);
            batch
        })
    });
    group.finish();
    criterion.final_summary();
}
