//! The customer import as `fiche import customers` runs it, and the caller index
//! built from what it wrote:
//!
//! 1. import throughput: a generated 1,000,000-row French-Excel CSV (Windows-1252,
//!    `;`, one mobile number per row in mixed formats) read, mapped, checked and
//!    upserted into a fresh SQLite database through the command's own pipeline;
//!    timed once per run (a fresh database each time: criterion's ten samples of
//!    a 15-second job would take minutes), printed as rows/s;
//! 2. index build from the database, 1,000,000 numbers: `Store::all_phone_numbers`
//!    then `fiche_matcher::Index::build`, as `fiche serve` does at start (criterion).
//!
//! `cargo bench -p fiche-server --bench import`; `FICHE_BENCH_ROWS` (default
//! 1,000,000) and `FICHE_BENCH_RUNS` (default 1) change the size and repetitions.
//! The files live in a temporary directory removed at the end.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;
use fiche_matcher::{Index, NumberPolicy};
use fiche_server::cli::customers_file::{pipeline, ImportCustomersArgs};
use fiche_store::Store;

/// CPU time of this process so far (user + system, all threads), from
/// `/proc/self/stat`: on a shared machine it says what the work costs when wall
/// time says how busy the neighbours are. `None` off Linux.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on every Linux configuration in use.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_since(start: Option<Duration>) -> String {
    match (start, process_cpu()) {
        (Some(a), Some(b)) => format!("{:.2?}", b.saturating_sub(a)),
        _ => "n/a".to_owned(),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Windows-1252 bytes of `text`: every character used here is Latin-1, which
/// Windows-1252 matches above 0xA0.
fn cp1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

fn generate(path: &Path, rows: usize) {
    let first_names = ["Hélène", "Zoé", "François", "Agnès", "Jérôme", "Noël"];
    let companies = [
        "Société Générale",
        "Crédit Agricole",
        "Boulangerie Lefèvre",
        "",
    ];
    let mut text = String::with_capacity(rows * 110);
    text.push_str("Code client;Nom;Prénom;Société;Portable;Email;Ville\r\n");
    for n in 0..rows {
        let d = format!("{:08}", 10_000_000 + n);
        let mobile = match n % 5 {
            0 => format!("06 {} {} {} {}", &d[0..2], &d[2..4], &d[4..6], &d[6..8]),
            1 => format!(
                "+33 (0)6 {} {} {} {}",
                &d[0..2],
                &d[2..4],
                &d[4..6],
                &d[6..8]
            ),
            2 => format!("00336{d}"),
            3 => format!("06.{}.{}.{}.{}", &d[0..2], &d[2..4], &d[4..6], &d[6..8]),
            _ => format!("+336{d}"),
        };
        text.push_str(&format!(
            "C{n:07};Lefèvre {n};{};{};{mobile};client{n}@exemple.fr;Orléans\r\n",
            first_names[n % first_names.len()],
            companies[n % companies.len()],
        ));
    }
    std::fs::write(path, cp1252(&text)).expect("writing the generated CSV");
}

async fn fresh_store(dir: &Path, name: &str) -> (Store, PathBuf) {
    let db = dir.join(name);
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("opening SQLite");
    store.migrate().await.expect("migrating");
    (store, db)
}

fn main() {
    let rows = env_usize("FICHE_BENCH_ROWS", 1_000_000);
    let runs = env_usize("FICHE_BENCH_RUNS", 1).max(1);
    let dir = std::env::temp_dir().join(format!("fiche-import-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the bench directory");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");

    let csv = dir.join("clients.csv");
    let started = Instant::now();
    generate(&csv, rows);
    println!(
        "generated {rows} rows ({} MB) in {:.1?}",
        std::fs::metadata(&csv)
            .map(|m| m.len() / 1_000_000)
            .unwrap_or(0),
        started.elapsed()
    );

    let args = ImportCustomersArgs {
        file: csv.clone(),
        map: Vec::new(),
        sheet: None,
        delimiter: None,
        dry_run: false,
        skip_bad: false,
        lang: None,
    };
    let policy = NumberPolicy::default();

    // The reading part alone, to see where the time goes.
    let cpu = process_cpu();
    let started = Instant::now();
    let batch = fiche_import::read_path(
        &csv,
        &pipeline::options(&policy, &args).expect("options"),
        &mut |_| {},
    )
    .expect("reading the CSV");
    let read = started.elapsed();
    assert_eq!(batch.records.len(), rows);
    println!(
        "read + map + normalise + de-duplicate {rows} rows: {read:.2?} wall ({:.0} rows/s), CPU {}",
        rows as f64 / read.as_secs_f64(),
        cpu_since(cpu)
    );
    drop(batch);

    let mut store_for_index = None;
    for run in 0..runs {
        let (store, db) = runtime.block_on(fresh_store(&dir, &format!("run{run}.db")));
        let cpu = process_cpu();
        let started = Instant::now();
        let outcome = runtime
            .block_on(pipeline::run(&store, &policy, &args, false))
            .expect("import");
        let elapsed = started.elapsed();
        assert_eq!(outcome.inserted, rows, "every row becomes a customer");
        assert!(outcome.bad.is_empty());
        println!(
            "import customers (read + check + upsert on SQLite), {rows} rows, run {}: {elapsed:.2?} wall ({:.0} rows/s), CPU {}",
            run + 1,
            rows as f64 / elapsed.as_secs_f64(),
            cpu_since(cpu)
        );
        match store_for_index {
            None => store_for_index = Some(store),
            Some(_) => {
                runtime.block_on(store.close());
                let _ = std::fs::remove_file(&db);
            }
        }
    }
    let Some(store) = store_for_index else {
        return;
    };

    let build = |store: &Store| {
        let numbers = runtime
            .block_on(store.all_phone_numbers())
            .expect("reading the numbers");
        let count = numbers.len();
        let rows = numbers.into_iter().map(|entry| {
            (
                fiche_matcher::CustomerId(entry.customer_id.0),
                entry.e164.unwrap_or(entry.raw),
                entry.last_contact_at,
            )
        });
        Index::build(rows, count)
    };
    let cpu = process_cpu();
    let started = Instant::now();
    let index = build(&store);
    println!(
        "index build from SQLite, {} numbers, first run: {:.2?} wall, CPU {}",
        index.number_count(),
        started.elapsed(),
        cpu_since(cpu)
    );
    drop(index);

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    criterion.bench_function(
        &format!("index build from SQLite ({rows} numbers): all_phone_numbers + Index::build"),
        |b| b.iter(|| black_box(build(&store)).number_count()),
    );
    criterion.final_summary();

    runtime.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);
}
