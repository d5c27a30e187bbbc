//! `fiche import customers` and `fiche export customers` through the real
//! binary: a 100,000-row French-Excel CSV (Windows-1252, `;`, mixed phone
//! formats, a few bad rows), an XLSX file, `--map`, `--dry-run`, `--skip-bad`,
//! re-import, the export read back, on SQLite and on PostgreSQL.
//!
//! `FICHE_BIN` picks another binary, e.g. a release build. PostgreSQL at
//! `FICHE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! is required: each run gets a schema of its own, dropped afterwards.

use fiche_e2e::pg::PgSchema;
use fiche_e2e::testbed::fiche_binary;
use fiche_import::{ImportedCustomer, Options};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Guard against a hung command, in seconds (not a speed assertion).
const COMMAND_LIMIT_SECS: u32 = 600;

/// Data rows of the big file.
const ROWS: usize = 100_000;
/// Rows made bad on purpose: (row index, what is wrong).
const BAD_ROWS: [(usize, BadKind); 5] = [
    (777, BadKind::ShortPhone),
    (5_000, BadKind::NoName),
    (42_424, BadKind::LongPhone),
    (65_000, BadKind::BadEmail),
    (99_998, BadKind::NoName),
];
/// Rows repeating an earlier row's customer reference (merged within the file),
/// with a number of their own: (row index, row index repeated).
const DUPLICATE_ROWS: [(usize, usize); 2] = [(50_000, 10), (80_001, 20_000)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadKind {
    ShortPhone,
    LongPhone,
    NoName,
    BadEmail,
}

/// Excel's line of a data row: the header is line 1.
fn line_of(row: usize) -> usize {
    row + 2
}

fn reference(row: usize) -> String {
    format!("C{row:06}")
}

/// The mobile number of row `row`, as E.164.
fn mobile_e164(row: usize) -> String {
    format!("+336{:08}", 10_000_000 + row)
}

/// The same number as a person would type it, in one of several formats.
fn mobile_typed(row: usize) -> String {
    let d = format!("{:08}", 10_000_000 + row);
    let pairs = |sep: &str| {
        [&d[0..2], &d[2..4], &d[4..6], &d[6..8]]
            .map(str::to_owned)
            .join(sep)
    };
    match row % 5 {
        0 => format!("06 {}", pairs(" ")),
        1 => format!("+33 (0)6 {}", pairs(" ")),
        2 => format!("00336{d}"),
        3 => format!("06.{}", pairs(".")),
        _ => format!("+33 6 {}", pairs(" ")),
    }
}

/// The landline of row `row` (every third row has none), typed and as E.164.
fn landline(row: usize) -> Option<(String, String)> {
    let d = format!("{:08}", 20_000_000 + row);
    let e164 = format!("+331{d}");
    match row % 3 {
        0 => Some((
            format!("01.{}.{}.{}.{}", &d[0..2], &d[2..4], &d[4..6], &d[6..8]),
            e164,
        )),
        1 if row % 100 == 1 => {
            // A few international customers: London numbers.
            let typed = format!("+44 20 7{:03} {:04}", row / 10_000, row % 10_000);
            let e164 = format!("+44207{:03}{:04}", row / 10_000, row % 10_000);
            Some((typed, e164))
        }
        1 => Some((
            format!("01 {} {} {} {}", &d[0..2], &d[2..4], &d[4..6], &d[6..8]),
            e164,
        )),
        _ => None,
    }
}

const FIRST_NAMES: [&str; 6] = ["Hélène", "Zoé", "François", "Agnès", "Jérôme", "Noël"];
const LAST_NAMES: [&str; 5] = ["Lefèvre", "Dupont", "Müller", "Garçon", "Bénard"];
const COMPANIES: [&str; 4] = [
    "Société Générale",
    "Crédit Agricole",
    "Boulangerie Lefèvre & Fils",
    "",
];

/// The big file's text (before encoding) and its expected customers by reference.
fn big_file() -> String {
    let mut text = String::from(
        "Code client;Nom;Prénom;Société;Téléphone;Portable;Email;Ville;Remarque interne\r\n",
    );
    for row in 0..ROWS {
        let bad = BAD_ROWS.iter().find(|(r, _)| *r == row).map(|(_, k)| *k);
        let duplicate_of = DUPLICATE_ROWS
            .iter()
            .find(|(r, _)| *r == row)
            .map(|(_, of)| *of);
        let key_row = duplicate_of.unwrap_or(row);
        let (mut last, mut first) = (
            format!("{} {row}", LAST_NAMES[key_row % LAST_NAMES.len()]),
            FIRST_NAMES[key_row % FIRST_NAMES.len()].to_owned(),
        );
        if duplicate_of.is_some() {
            // Same person, same reference: the row adds nothing but its number.
            last = format!("{} {key_row}", LAST_NAMES[key_row % LAST_NAMES.len()]);
        }
        let mut company = COMPANIES[key_row % COMPANIES.len()].to_owned();
        let mut mobile = mobile_typed(row);
        let mut email = format!("client{key_row}@exemple.fr");
        match bad {
            Some(BadKind::ShortPhone) => mobile = "0612".to_owned(),
            Some(BadKind::LongPhone) => mobile = "06 12 34 56 78 90 12 34".to_owned(),
            Some(BadKind::NoName) => {
                last.clear();
                first.clear();
                company.clear();
            }
            Some(BadKind::BadEmail) => email = "pas-une-adresse".to_owned(),
            None => {}
        }
        let fixed = landline(row).map(|(typed, _)| typed).unwrap_or_default();
        text.push_str(&format!(
            "{};{last};{first};{company};{fixed};{mobile};{email};Orléans;vu le {}\r\n",
            reference(key_row),
            row % 28 + 1
        ));
    }
    text
}

/// The customers the big file should give once bad rows are skipped.
fn expected_customers() -> usize {
    ROWS - BAD_ROWS.len() - DUPLICATE_ROWS.len()
}

fn write_cp1252(path: &Path, text: &str) {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable, "test data must fit Windows-1252");
    std::fs::write(path, bytes).unwrap();
}

/// One database for the `fiche` commands of a test.
struct Db {
    url: String,
    dir: tempfile::TempDir,
    /// PostgreSQL: the schema to drop when the test ends, passed or failed.
    schema: Option<PgSchema>,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        Db {
            url: format!("sqlite://{}/fiche.db", dir.path().display()),
            dir,
            schema: None,
        }
    }

    async fn postgres() -> Db {
        let schema = PgSchema::create("import").await;
        Db {
            url: schema.url.clone(),
            dir: tempfile::tempdir().unwrap(),
            schema: Some(schema),
        }
    }

    /// Rows of `table`, read directly (cheaper than a full export on a debug build).
    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.schema.is_some() {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `fiche ARGS` against this database, French messages.
    fn fiche(&self, args: &[&str]) -> Run {
        let binary = fiche_binary().unwrap();
        let output = Command::new("timeout")
            .arg(COMMAND_LIMIT_SECS.to_string())
            .arg(&binary)
            .args(args)
            .current_dir(self.dir.path())
            .env("FICHE_DATABASE_URL", &self.url)
            .env("FICHE_LOG", "warn")
            .env_remove("FICHE_LANG")
            .env_remove("FICHE_CONFIG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .unwrap();
        Run::from(args, output)
    }

    /// `fiche export customers -o FILE`, read back with the importer's reader.
    fn export(&self) -> Vec<ImportedCustomer> {
        let file = self.path("export.csv");
        let run = self.fiche(&["export", "customers", "-o", file.to_str().unwrap()]);
        run.assert_code(0);
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            bytes.starts_with(b"\xEF\xBB\xBF"),
            "the export starts with a UTF-8 byte order mark for Excel"
        );
        let header_line = bytes.split(|b| *b == b'\n').next().unwrap();
        assert!(
            std::str::from_utf8(header_line).unwrap().contains(";Nom;"),
            "`;`-separated: {:?}",
            String::from_utf8_lossy(header_line)
        );
        let batch = fiche_import::read_csv(bytes.as_slice(), &Options::default(), &mut |_| {})
            .unwrap_or_else(|e| panic!("the export cannot be read back: {e}"));
        assert!(
            batch.errors.is_empty(),
            "the export reads back without bad rows: {:?}",
            &batch.errors[..batch.errors.len().min(5)]
        );
        batch.records
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Also after a failed assertion; async work needs a runtime of its own here.
        let Some(schema) = self.schema.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(schema.drop_schema());
        })
        .join();
    }
}

/// A finished `fiche` command.
struct Run {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(args: &[&str], output: Output) -> Run {
        Run {
            command: format!("fiche {}", args.join(" ")),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code of `{}`\n--- stdout:\n{}\n--- stderr:\n{}",
            self.command,
            tail(&self.stdout),
            tail(&self.stderr)
        );
        self
    }

    /// The last line of standard output: the summary.
    fn summary(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }

    fn assert_summary_has(&self, parts: &[&str]) -> &Self {
        for part in parts {
            assert!(
                self.summary().contains(part),
                "`{}`: summary {:?} lacks {part:?}",
                self.command,
                self.summary()
            );
        }
        self
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn by_reference(records: Vec<ImportedCustomer>) -> HashMap<String, ImportedCustomer> {
    records
        .into_iter()
        .map(|r| {
            (
                r.external_ref
                    .clone()
                    .expect("every customer has a reference"),
                r,
            )
        })
        .collect()
}

/// The whole story on one database: refusal, dry run, import, re-import.
async fn big_file_story(db: &Db) {
    let file = db.path("clients.csv");
    write_cp1252(&file, &big_file());
    let file = file.to_str().unwrap();

    // 1. Bad rows: nothing written, each bad line named on stderr.
    let refused = db.fiche(&["import", "customers", file]);
    refused.assert_code(1).assert_summary_has(&[
        "Import refusé",
        "100000 lignes lues",
        "5 lignes invalides",
    ]);
    for (row, kind) in BAD_ROWS {
        let prefix = format!("ligne {}", line_of(row));
        let reported: Vec<&str> = refused
            .stderr
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{prefix} ")) || l.starts_with(&format!("{prefix},"))
            })
            .collect();
        let expected = match kind {
            BadKind::ShortPhone => "« 0612 »",
            BadKind::LongPhone => "numéro de téléphone invalide « 06 12 34 56 78 90 12 34 »",
            BadKind::NoName => "ni nom ni société",
            BadKind::BadEmail => "adresse e-mail invalide « pas-une-adresse »",
        };
        assert!(
            reported.iter().any(|l| l.contains(expected)),
            "line {} ({kind:?}) reported with {expected:?}; stderr:\n{}",
            line_of(row),
            tail(&refused.stderr)
        );
    }
    let reported_lines = refused
        .stderr
        .lines()
        .filter(|l| l.starts_with("ligne "))
        .count();
    assert_eq!(
        reported_lines,
        BAD_ROWS.len(),
        "only the bad rows are reported:\n{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--skip-bad"),
        "the way out is named"
    );
    assert!(
        refused.stderr.contains("Remarque interne"),
        "the unrecognised column is named: {}",
        tail(&refused.stderr)
    );
    assert!(db.export().is_empty(), "a refused import writes nothing");

    // 2. Dry run: what --skip-bad would do, nothing written.
    let dry = db.fiche(&["import", "customers", file, "--dry-run", "--skip-bad"]);
    dry.assert_code(0).assert_summary_has(&[
        "Simulation, rien n'a été écrit",
        &format!("{} clients seraient créés", expected_customers()),
        "0 mis à jour",
        "2 doublons fusionnés dans le fichier",
        "5 lignes invalides",
    ]);
    for (row, of) in DUPLICATE_ROWS {
        let merged = format!(
            "ligne {} fusionnée avec la ligne {}",
            line_of(row),
            line_of(of)
        );
        assert!(
            dry.stdout.contains(&merged),
            "{merged:?} in:\n{}",
            dry.stdout
        );
    }
    assert!(db.export().is_empty(), "a dry run writes nothing");

    // 3. --skip-bad imports the rest.
    let imported = db.fiche(&["import", "customers", file, "--skip-bad"]);
    imported.assert_code(0).assert_summary_has(&[
        "Import terminé",
        &format!("{} clients créés", expected_customers()),
        "0 mis à jour",
        "5 lignes invalides ignorées",
    ]);
    assert_eq!(
        imported
            .stderr
            .lines()
            .filter(|l| l.starts_with("ligne "))
            .count(),
        BAD_ROWS.len(),
        "bad rows are still reported with --skip-bad"
    );
    let customers = by_reference(db.export());
    assert_eq!(customers.len(), expected_customers());
    for (row, _) in BAD_ROWS {
        assert!(
            !customers.contains_key(&reference(row)),
            "bad row {row} left out"
        );
    }
    // Accents survive Windows-1252 → store → UTF-8 export; every format of number
    // ends up as the same E.164 number.
    for row in [0, 1, 2, 3, 4, 101, 12_345, 99_999] {
        let customer = &customers[&reference(row)];
        assert_eq!(
            customer.name,
            format!(
                "{} {} {row}",
                FIRST_NAMES[row % FIRST_NAMES.len()],
                LAST_NAMES[row % LAST_NAMES.len()]
            )
        );
        let company = COMPANIES[row % COMPANIES.len()];
        assert_eq!(
            customer.company.as_deref(),
            (!company.is_empty()).then_some(company)
        );
        assert_eq!(
            customer.email.as_deref(),
            Some(format!("client{row}@exemple.fr").as_str())
        );
        let mut numbers: Vec<&str> = customer.phones.iter().map(|p| p.e164.as_str()).collect();
        numbers.sort_unstable();
        let mut expected = vec![mobile_e164(row)];
        expected.extend(landline(row).map(|(_, e164)| e164));
        expected.sort_unstable();
        assert_eq!(
            numbers,
            expected,
            "numbers of row {row} ({:?})",
            mobile_typed(row)
        );
    }
    assert_eq!(
        customers[&reference(1)].company.as_deref(),
        Some("Crédit Agricole")
    );
    assert!(customers[&reference(0)]
        .address
        .as_deref()
        .unwrap_or("")
        .contains("Orléans"));
    // A duplicate row's number joins the customer it repeats.
    for (row, of) in DUPLICATE_ROWS {
        let customer = &customers[&reference(of)];
        assert!(
            customer.phones.iter().any(|p| p.e164 == mobile_e164(row)),
            "row {row}'s number merged into {}: {:?}",
            reference(of),
            customer.phones
        );
    }

    // 4. The same file again updates, never duplicates customers or numbers.
    let phones = db.count("customer_phones").await;
    assert_eq!(db.count("customers").await, expected_customers() as i64);
    let again = db.fiche(&["import", "customers", file, "--skip-bad"]);
    again.assert_code(0).assert_summary_has(&[
        "0 clients créés",
        &format!("{} mis à jour", expected_customers()),
    ]);
    assert_eq!(db.count("customers").await, expected_customers() as i64);
    assert_eq!(db.count("customer_phones").await, phones);
}

#[tokio::test(flavor = "multi_thread")]
async fn big_french_excel_file_on_sqlite() {
    let db = Db::sqlite();
    big_file_story(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn big_french_excel_file_on_postgres() {
    let db = Db::postgres().await;
    big_file_story(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_names_the_key_that_matched_existing_customers() {
    let db = Db::sqlite();
    let first = db.path("first.csv");
    write_cp1252(
        &first,
        "Référence;Nom;Société;Email;Portable\r\n\
         R1;Hélène Lefèvre;Société Générale;helene@exemple.fr;06 12 34 56 78\r\n\
         ;Jérôme Bénard;;jerome@exemple.fr;06 98 76 54 32\r\n\
         ;Zoé Garçon;;;07 61 22 33 44\r\n",
    );
    db.fiche(&["import", "customers", first.to_str().unwrap()])
        .assert_code(0)
        .assert_summary_has(&["3 clients créés"]);

    let second = db.path("second.csv");
    write_cp1252(
        &second,
        "Référence;Nom;Société;Email;Portable\r\n\
         R1;Hélène Lefèvre;Société Générale;;\r\n\
         ;Jérôme Bénard;;JEROME@exemple.fr;\r\n\
         ;Zoé Garçon;;zoe@exemple.fr;+33 7 61 22 33 44\r\n\
         ;Noël Müller;;;01 44 55 66 77\r\n",
    );
    let dry = db.fiche(&["import", "customers", second.to_str().unwrap(), "--dry-run"]);
    dry.assert_code(0)
        .assert_summary_has(&["1 clients seraient créés", "3 mis à jour"]);
    for expected in [
        "ligne 2 → client n° 1 (même référence)",
        "ligne 3 → client n° 2 (même e-mail)",
        "ligne 4 → client n° 3 (même téléphone)",
        "par référence : 1, par e-mail : 1, par téléphone : 1",
    ] {
        assert!(
            dry.stdout.contains(expected),
            "{expected:?} in:\n{}",
            dry.stdout
        );
    }
    assert_eq!(db.export().len(), 3, "dry run wrote nothing");

    let run = db.fiche(&[
        "import",
        "customers",
        second.to_str().unwrap(),
        "--lang",
        "en",
    ]);
    run.assert_code(0)
        .assert_summary_has(&["Import done", "1 customers created", "3 updated"]);
    let customers = db.export();
    assert_eq!(customers.len(), 4);
    let zoe = customers.iter().find(|c| c.name == "Zoé Garçon").unwrap();
    assert_eq!(
        zoe.email.as_deref(),
        Some("zoe@exemple.fr"),
        "the update added the e-mail"
    );
    assert_eq!(
        zoe.phones.len(),
        1,
        "the same number in another format is not added twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn xlsx_file_with_a_bad_row() {
    let db = Db::sqlite();
    let path = db.path("clients.xlsx");
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("Clients").unwrap();
    let header = [
        "Nom",
        "Prénom",
        "Société",
        "Tél. portable",
        "Téléphone fixe",
        "E-mail",
    ];
    for (col, title) in header.iter().enumerate() {
        sheet.write_string(0, col as u16, *title).unwrap();
    }
    for i in 0..200u32 {
        let row = i + 1;
        sheet.write_string(row, 0, format!("Lefèvre {i}")).unwrap();
        sheet.write_string(row, 1, "Hélène").unwrap();
        sheet.write_string(row, 2, "Société Générale").unwrap();
        let mobile = if i == 57 {
            "06 12 34".to_owned()
        } else {
            format!("+33 (0)6 {:02} {:02} 00 00", i / 100 + 10, i % 100)
        };
        sheet.write_string(row, 3, mobile).unwrap();
        if i % 2 == 0 {
            // Excel keeps typed numbers as numbers: the leading 0 is gone.
            sheet
                .write_number(row, 4, 144_556_600.0 + f64::from(i))
                .unwrap();
        }
        sheet
            .write_string(row, 5, format!("h{i}@exemple.fr"))
            .unwrap();
    }
    let other = workbook.add_worksheet();
    other.set_name("Notes").unwrap();
    other.write_string(0, 0, "rien").unwrap();
    workbook.save(&path).unwrap();
    let file = path.to_str().unwrap();

    // Row i = 57 is on Excel line 59.
    let refused = db.fiche(&["import", "customers", file]);
    refused.assert_code(1);
    assert!(
        refused
            .stderr
            .lines()
            .any(|l| l.starts_with("ligne 59, colonne « Tél. portable »")
                && l.contains("« 06 12 34 »")),
        "bad row named by its Excel line and column:\n{}",
        refused.stderr
    );
    assert!(db.export().is_empty());

    let missing = db.fiche(&["import", "customers", file, "--sheet", "Feuil9"]);
    missing.assert_code(2);
    assert!(missing.stderr.contains("Feuil9"), "{}", missing.stderr);

    db.fiche(&[
        "import",
        "customers",
        file,
        "--sheet",
        "Clients",
        "--skip-bad",
    ])
    .assert_code(0)
    .assert_summary_has(&["199 clients créés", "1 lignes invalides ignorées"]);
    let customers = db.export();
    assert_eq!(customers.len(), 199);
    let first = customers
        .iter()
        .find(|c| c.name == "Hélène Lefèvre 0")
        .unwrap();
    let mut numbers: Vec<&str> = first.phones.iter().map(|p| p.e164.as_str()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["+33144556600", "+33610000000"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn map_overrides_columns_the_defaults_do_not_know() {
    let db = Db::sqlite();
    let path = db.path("crm.csv");
    std::fs::write(
        &path,
        "Interlocuteur,Ligne directe,Commentaire,Numéro de dossier\n\
         Agnès Bénard,01 42 68 53 00,rappeler lundi,D-1\n\
         Noël Müller,+32 2 555 12 34,,D-2\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();

    // Without --map no column names a customer: unusable input.
    let unusable = db.fiche(&["import", "customers", file]);
    unusable.assert_code(2);
    assert!(unusable.stderr.contains("--map"), "{}", unusable.stderr);

    // An override naming a column the file lacks is unusable too.
    db.fiche(&["import", "customers", file, "--map", "Nom complet=name"])
        .assert_code(2);

    db.fiche(&[
        "import",
        "customers",
        file,
        "--delimiter",
        ",",
        "--map",
        "Interlocuteur=name",
        "--map",
        "Ligne directe=phone:bureau",
        "--map",
        "Commentaire=notes",
        "--map",
        "numéro de dossier=ref",
    ])
    .assert_code(0)
    .assert_summary_has(&["2 clients créés"]);
    let customers = by_reference(db.export());
    let agnes = &customers["D-1"];
    assert_eq!(agnes.name, "Agnès Bénard");
    assert_eq!(agnes.notes.as_deref(), Some("rappeler lundi"));
    assert_eq!(agnes.phones.len(), 1);
    assert_eq!(agnes.phones[0].e164, "+33142685300");
    assert_eq!(agnes.phones[0].label, "bureau");
    assert_eq!(customers["D-2"].phones[0].e164, "+3225551234");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_imports_back_to_the_same_customers() {
    let db = Db::sqlite();
    let path = db.path("in.csv");
    std::fs::write(
        &path,
        "\u{feff}Référence;Nom;Société;Email;Téléphone;Portable;Portable 2;Notes;Étiquettes\r\n\
         A1;\"Dupont; Marie\";\"Les \"\"Amis\"\" du Vin\";m@exemple.fr;01 42 68 53 00;06 12 34 56 78;07 81 23 45 67;\"ligne 1\nligne 2\";VIP, rappel\r\n\
         A2;\"=HYPERLINK(\"\"x\"\")\";;;;+33 6 99 99 99 99;;;\r\n",
    )
    .unwrap();
    db.fiche(&["import", "customers", path.to_str().unwrap()])
        .assert_code(0)
        .assert_summary_has(&["2 clients créés"]);
    let first = db.export();
    assert_eq!(first.len(), 2);
    let marie = first
        .iter()
        .find(|c| c.external_ref.as_deref() == Some("A1"))
        .unwrap();
    assert_eq!(marie.name, "Dupont; Marie");
    assert_eq!(marie.company.as_deref(), Some("Les \"Amis\" du Vin"));
    assert_eq!(marie.notes.as_deref(), Some("ligne 1\nligne 2"));
    assert_eq!(marie.tags, ["VIP", "rappel"]);
    assert_eq!(marie.phones.len(), 3);
    let formula = first
        .iter()
        .find(|c| c.external_ref.as_deref() == Some("A2"))
        .unwrap();
    assert_eq!(formula.name, "=HYPERLINK(\"x\")", "stored as typed");
    let exported = std::fs::read(db.path("export.csv")).unwrap();
    assert!(
        !String::from_utf8_lossy(&exported).contains(";=HYPERLINK"),
        "Excel must not see a formula"
    );

    // The export into a fresh database gives the same customers.
    let copy = Db::sqlite();
    let exported_path = copy.path("from-export.csv");
    std::fs::write(&exported_path, &exported).unwrap();
    copy.fiche(&["import", "customers", exported_path.to_str().unwrap()])
        .assert_code(0)
        .assert_summary_has(&["2 clients créés"]);
    let strip = |records: Vec<ImportedCustomer>| -> Vec<ImportedCustomer> {
        records
            .into_iter()
            .map(|mut r| {
                r.line = 0;
                r
            })
            .collect()
    };
    assert_eq!(strip(copy.export()), strip(first));
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_the_store_would_refuse_are_reported_before_anything_is_written() {
    let db = Db::sqlite();
    let path = db.path("long.csv");
    let long_company = "Société ".repeat(80);
    std::fs::write(
        &path,
        format!(
            "Nom;Société;Portable\r\n\
             Hélène Lefèvre;;06 12 34 56 78\r\n\
             Jérôme Bénard;{long_company};06 98 76 54 32\r\n"
        ),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let refused = db.fiche(&["import", "customers", file]);
    refused.assert_code(1);
    assert!(
        refused
            .stderr
            .contains("ligne 3 : valeur refusée pour « société » : plus de 512 caractères"),
        "{}",
        refused.stderr
    );
    assert!(db.export().is_empty(), "the good row waits for the bad one");
    db.fiche(&["import", "customers", file, "--skip-bad"])
        .assert_code(0)
        .assert_summary_has(&["1 clients créés", "1 lignes invalides ignorées"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_files_are_unusable_input() {
    let db = Db::sqlite();
    let missing = db.path("absent.csv");
    let run = db.fiche(&["import", "customers", missing.to_str().unwrap()]);
    run.assert_code(2);
    assert!(run.stderr.contains("absent.csv"), "{}", run.stderr);
    assert!(run.stdout.is_empty());

    let odd = db.path("clients.pdf");
    std::fs::write(&odd, b"%PDF-1.4").unwrap();
    db.fiche(&["import", "customers", odd.to_str().unwrap()])
        .assert_code(2);

    let english = Command::new(fiche_binary().unwrap())
        .args(["import", "customers", missing.to_str().unwrap()])
        .current_dir(db.dir.path())
        .env("FICHE_DATABASE_URL", &db.url)
        .env("FICHE_LANG", "en")
        .output()
        .unwrap();
    assert_eq!(english.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&english.stderr).contains("unusable input, nothing imported"));
}
