//! Reading customer files as French offices write them: generated CSV in
//! Windows-1252 and UTF-8, XLSX, bad rows, duplicates, and the export that
//! must read back the same.

use std::io::Write;
use std::path::{Path, PathBuf};

use fiche_import::{
    read_csv, read_path, write_csv, ImportBatch, ImportError, ImportedCustomer, MergeKey, Options,
    RowIssue,
};

fn options() -> Options {
    Options::default()
}

fn no_progress() -> impl FnMut(fiche_import::Progress) {
    |_| {}
}

fn cp1252(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable);
    bytes.into_owned()
}

fn read_bytes(bytes: &[u8]) -> ImportBatch {
    read_csv(bytes, &options(), &mut no_progress()).unwrap()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn phones(record: &ImportedCustomer) -> Vec<(&str, &str)> {
    record
        .phones
        .iter()
        .map(|p| (p.e164.as_str(), p.label.as_str()))
        .collect()
}

const FRENCH_EXCEL: &str = "Réf.;Nom;Prénom;Société;Téléphone;Portable;E-mail;Adresse;Code postal;Ville;Commentaire;Étiquettes;Chiffre d'affaires\r\n\
C001;Dupré;Hélène;Boulangerie Léon;01 42 68 53 00;06.12.34.56.78;helene@leon.fr;12, rue de l'Église;75004;Paris;Préfère être appelée le matin;VIP, boulangerie;12000\r\n\
C002;Martin;;;+33 (0)4 78 12 34 56;0033 7 81 23 45 67;;;;;;;\r\n\
C003;;;Garage Sébastien;0262 26 12 34;;contact@garage.re;;97400;Saint-Denis;;;\r\n\
;;;;;;;;;;;;\r\n\
C004;Petit;Zoé;;06 12;;zoe@;;;;;;\r\n\
C005;;;;0612345678;;;;;;;;\r\n\
C006;Bernard;Chloë;;3631;;;;;;;;\r\n";

#[test]
fn windows_1252_semicolon_file_with_bad_rows() {
    let batch = read_bytes(&cp1252(FRENCH_EXCEL));
    assert_eq!(batch.rows, 6, "the blank line is not a row");
    assert_eq!(batch.records.len(), 3);
    assert_eq!(batch.ignored_columns, vec!["Chiffre d'affaires".to_owned()]);

    let helene = &batch.records[0];
    assert_eq!(helene.line, 2);
    assert_eq!(helene.external_ref.as_deref(), Some("C001"));
    assert_eq!(helene.name, "Hélène Dupré");
    assert_eq!(helene.company.as_deref(), Some("Boulangerie Léon"));
    assert_eq!(helene.email.as_deref(), Some("helene@leon.fr"));
    assert_eq!(
        helene.address.as_deref(),
        Some("12, rue de l'Église, 75004 Paris")
    );
    assert_eq!(
        helene.notes.as_deref(),
        Some("Préfère être appelée le matin")
    );
    assert_eq!(helene.tags, vec!["VIP", "boulangerie"]);
    assert_eq!(
        phones(helene),
        vec![("+33142685300", "téléphone"), ("+33612345678", "portable")]
    );
    assert_eq!(helene.phones[1].raw, "06.12.34.56.78");

    let martin = &batch.records[1];
    assert_eq!(martin.line, 3);
    assert_eq!(
        phones(martin),
        vec![("+33478123456", "téléphone"), ("+33781234567", "portable")]
    );
    let garage = &batch.records[2];
    assert_eq!(garage.name, "");
    assert_eq!(garage.company.as_deref(), Some("Garage Sébastien"));
    assert_eq!(phones(garage), vec![("+262262261234", "téléphone")]);

    let errors: Vec<(usize, Option<&str>, &RowIssue)> = batch
        .errors
        .iter()
        .map(|e| (e.line, e.column.as_deref(), &e.issue))
        .collect();
    assert_eq!(
        errors,
        vec![
            (6, Some("Téléphone"), &RowIssue::ShortPhone("06 12".into())),
            (6, Some("E-mail"), &RowIssue::InvalidEmail("zoe@".into())),
            (7, None, &RowIssue::MissingName),
            (8, Some("Téléphone"), &RowIssue::ShortPhone("3631".into())),
        ]
    );
    assert_eq!(batch.bad_lines(), 3);
    assert_eq!(
        batch.errors[0].to_string(),
        "ligne 6, colonne « Téléphone » : numéro de téléphone trop court « 06 12 »"
    );
    assert_eq!(
        batch.errors[2].english(),
        "line 7: neither a name nor a company"
    );
}

#[test]
fn utf8_with_and_without_bom_and_comma_delimiter() {
    let text = "Name,Company,Phone,Mobile,Email\n\"Smith, John\",Acme,+44 20 7946 0958,+1 415 555 2671,john@acme.com\n";
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(text.as_bytes());
    for bytes in [text.as_bytes().to_vec(), with_bom] {
        let batch = read_bytes(&bytes);
        assert!(batch.errors.is_empty(), "{:?}", batch.errors);
        assert_eq!(batch.records.len(), 1);
        let john = &batch.records[0];
        assert_eq!(john.name, "Smith, John");
        assert_eq!(
            phones(john),
            vec![("+442079460958", "téléphone"), ("+14155552671", "portable")]
        );
    }
    // Accented UTF-8 stays UTF-8.
    let batch = read_bytes("Nom;Ville\nÉlodie Noël;Besançon\n".as_bytes());
    assert_eq!(batch.records[0].name, "Élodie Noël");
    assert_eq!(batch.records[0].address.as_deref(), Some("Besançon"));
}

#[test]
fn line_numbers_follow_excel_rows() {
    // A quoted cell spanning two lines is one Excel row; an empty row is a row.
    let text = "Nom;Notes;Téléphone\r\n\"Durand\";\"ligne un\r\nligne deux\";0612345678\r\n;;\r\nLeroy;;pas de numéro\r\n";
    let batch = read_bytes(text.as_bytes());
    assert_eq!(
        batch.records[0].notes.as_deref(),
        Some("ligne un\r\nligne deux")
    );
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].line, 4);
}

#[test]
fn several_numbers_in_one_cell_and_placeholders() {
    let text = "Nom;Téléphone;Fax\nA;06 12 34 56 78 / 01 42 68 53 00;-\nB;06 12 34 56 78 ou 07 81 23 45 67;néant\nC;'+33 6 12 34 56 78;N/A\n";
    let batch = read_bytes(text.as_bytes());
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    assert_eq!(
        phones(&batch.records[0]),
        vec![("+33612345678", "téléphone"), ("+33142685300", "téléphone")]
    );
    assert_eq!(
        phones(&batch.records[1]),
        vec![("+33612345678", "téléphone"), ("+33781234567", "téléphone")]
    );
    assert_eq!(batch.records[2].phones[0].raw, "+33 6 12 34 56 78");
}

#[test]
fn overrides_and_extra_cells() {
    let text = "Raison;Tel. bureau;Divers\nACME;01 42 68 53 00;x\nBeta;01 42 68 53 01;;surplus\n";
    let mut options = options();
    options.overrides = vec![
        "Raison=company".parse().unwrap(),
        "tel. BUREAU=phone:ligne directe".parse().unwrap(),
    ];
    let batch = read_csv(text.as_bytes(), &options, &mut no_progress()).unwrap();
    assert_eq!(batch.records.len(), 1);
    assert_eq!(batch.records[0].company.as_deref(), Some("ACME"));
    assert_eq!(
        phones(&batch.records[0]),
        vec![("+33142685300", "ligne directe")]
    );
    assert_eq!(batch.ignored_columns, vec!["Divers".to_owned()]);
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].line, 3);
    assert_eq!(batch.errors[0].issue, RowIssue::ExtraCells(1));

    options.overrides = vec!["Absente=name".parse().unwrap()];
    let error = read_csv(text.as_bytes(), &options, &mut no_progress()).unwrap_err();
    assert!(
        matches!(error, ImportError::OverrideColumnNotFound { .. }),
        "{error}"
    );
}

#[test]
fn files_without_customer_columns_or_header_are_refused() {
    let error = read_csv("Foo;Bar\n1;2\n".as_bytes(), &options(), &mut no_progress()).unwrap_err();
    assert!(matches!(error, ImportError::NoUsefulColumn { .. }));
    let error = read_csv("".as_bytes(), &options(), &mut no_progress()).unwrap_err();
    assert!(matches!(error, ImportError::NoHeader));
    let error = read_csv(&b"\xFF\xFEN\0o\0m\0"[..], &options(), &mut no_progress()).unwrap_err();
    assert!(matches!(error, ImportError::Utf16));
}

#[test]
fn duplicates_merge_by_reference_then_email_then_phone() {
    let text = "Réf;Nom;Société;E-mail;Portable;Notes\n\
R1;Alice Roy;;alice@x.fr;0611111111;première\n\
R1;Alice Roy;Roy SARL;;0622222222;\n\
;Alice Roy;;ALICE@x.fr;;seconde\n\
;Bob Lenoir;;;0633333333;\n\
;bob lenoir;Lenoir & fils;;06 33 33 33 33;\n\
;Carla Standard;Acme;;0144444444;\n\
;Denis Standard;Acme;;0144444444;\n\
R2;Eve;;alice@x.fr;;\n";
    let batch = read_bytes(text.as_bytes());
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    let lines: Vec<(usize, Vec<usize>)> = batch
        .records
        .iter()
        .map(|r| (r.line, r.merged_lines.clone()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (2, vec![3, 4]),
            (5, vec![6]),
            (7, vec![]),
            (8, vec![]),
            (9, vec![])
        ],
        "switchboard contacts and a different reference stay apart"
    );
    let keys: Vec<&MergeKey> = batch.merges.iter().map(|m| &m.key).collect();
    assert_eq!(
        keys,
        vec![
            &MergeKey::ExternalRef("R1".into()),
            &MergeKey::Email("ALICE@x.fr".into()),
            &MergeKey::Phone("+33633333333".into()),
        ]
    );
    let alice = &batch.records[0];
    assert_eq!(alice.company.as_deref(), Some("Roy SARL"));
    assert_eq!(alice.email.as_deref(), Some("alice@x.fr"));
    assert_eq!(alice.phones.len(), 2);
    assert_eq!(alice.notes.as_deref(), Some("première\nseconde"));
    assert_eq!(batch.records[1].company.as_deref(), Some("Lenoir & fils"));
}

/// The same rule as the store's (`fiche_model::Identity`): a name written the
/// other way round is the same person on a shared number.
#[test]
fn a_shared_number_joins_a_name_written_the_other_way_round() {
    let text = "Nom;Portable\n\
Marie Durand;0611111111\n\
DURAND Marie;06 11 11 11 11\n";
    let batch = read_bytes(text.as_bytes());
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    assert_eq!(batch.records.len(), 1, "{:?}", batch.records);
    assert_eq!(batch.records[0].merged_lines, [3]);
}

#[test]
fn export_reads_back_identically() {
    let text = "Réf;Nom;Société;E-mail;Téléphone;Portable;Portable 2;Tél. astreinte;Adresse;Notes;Étiquettes\n\
R1;Hélène Dupré;=HYPERLINK(\"x\");h@x.fr;01 42 68 53 00;06 12 34 56 78;+33 7 81 23 45 67;0478123456;\"1 rue A; 75001 Paris\";\"deux\nlignes\";VIP, rappel\n\
;;Garage;;;;;;;;\n";
    let first = read_bytes(cp1252(text).as_slice());
    assert!(first.errors.is_empty(), "{:?}", first.errors);

    let mut exported = Vec::new();
    write_csv(&first.records, &mut exported).unwrap();
    assert!(exported.starts_with(b"\xEF\xBB\xBF"));
    let exported_text = String::from_utf8(exported.clone()).unwrap();
    assert!(exported_text.contains(";\"'=HYPERLINK"), "{exported_text}");
    assert!(exported_text.starts_with("\u{feff}Référence;Nom;Société;E-mail;Adresse;Notes;Étiquettes;Téléphone;Portable;Portable 2;Tél. astreinte\r\n"), "{exported_text}");

    let second = read_bytes(&exported);
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert!(second.ignored_columns.is_empty());
    assert_eq!(second.records, first.records);
}

#[test]
fn xlsx_first_sheet_and_named_sheet() {
    use rust_xlsxwriter::Workbook;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.xlsx");
    let mut workbook = Workbook::new();
    let summary = workbook.add_worksheet();
    summary.set_name("Clients").unwrap();
    for (col, header) in ["Nom", "Société", "Portable", "Fixe", "Code client"]
        .iter()
        .enumerate()
    {
        summary.write_string(0, col as u16, *header).unwrap();
    }
    summary.write_string(1, 0, "Émile Zola").unwrap();
    // A phone typed as a number: Excel drops the leading 0.
    summary.write_number(1, 2, 612345678.0).unwrap();
    summary.write_string(1, 3, "01 42 68 53 00").unwrap();
    summary.write_number(1, 4, 1042.0).unwrap();
    summary.write_string(2, 1, "Société sans nom").unwrap();
    summary.write_number(2, 2, 33781234567.0).unwrap();
    summary.write_string(3, 0, "Sans téléphone valide").unwrap();
    summary.write_string(3, 3, "012").unwrap();
    let other = workbook.add_worksheet();
    other.set_name("Archives").unwrap();
    other.write_string(0, 0, "Name").unwrap();
    other.write_string(1, 0, "Old customer").unwrap();
    workbook.save(&path).unwrap();

    let batch = read_path(&path, &options(), &mut no_progress()).unwrap();
    assert_eq!(batch.records.len(), 2);
    let emile = &batch.records[0];
    assert_eq!(emile.line, 2);
    assert_eq!(emile.name, "Émile Zola");
    assert_eq!(emile.external_ref.as_deref(), Some("1042"));
    assert_eq!(
        phones(emile),
        vec![("+33612345678", "portable"), ("+33142685300", "fixe")]
    );
    assert_eq!(
        phones(&batch.records[1]),
        vec![("+33781234567", "portable")]
    );
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].line, 4);
    assert_eq!(batch.errors[0].column.as_deref(), Some("Fixe"));

    let mut archives = options();
    archives.sheet = Some("archives".into());
    let batch = read_path(&path, &archives, &mut no_progress()).unwrap();
    assert_eq!(batch.records[0].name, "Old customer");

    archives.sheet = Some("Nope".into());
    let error = read_path(&path, &archives, &mut no_progress()).unwrap_err();
    assert!(matches!(error, ImportError::SheetNotFound { .. }));
}

#[test]
fn files_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_file(dir.path(), "c.CSV", &cp1252("Nom;Tél\nAndré;0612345678\n"));
    let batch = read_path(&csv, &options(), &mut no_progress()).unwrap();
    assert_eq!(batch.records[0].name, "André");
    let pdf = write_file(dir.path(), "c.pdf", b"%PDF");
    assert!(matches!(
        read_path(&pdf, &options(), &mut no_progress()),
        Err(ImportError::UnsupportedFile { .. })
    ));
    let missing = dir.path().join("absent.csv");
    assert!(matches!(
        read_path(&missing, &options(), &mut no_progress()),
        Err(ImportError::Io { .. })
    ));
}

/// 100,000 rows as French Excel writes them, mixed phone formats, one bad
/// row in a thousand.
#[test]
fn hundred_thousand_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gros.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(&cp1252(
        "Code client;Nom;Prénom;Société;Téléphone;Portable;Email;Ville\r\n",
    ))
    .unwrap();
    let formats = [
        |n: u32| {
            format!(
                "01 {:02} {:02} {:02} {:02}",
                n / 1_000_000 % 100,
                n / 10_000 % 100,
                n / 100 % 100,
                n % 100
            )
        },
        |n: u32| format!("+33 (0)1{n:08}"),
        |n: u32| format!("00331{n:08}"),
        |n: u32| {
            format!(
                "01.{:02}.{:02}.{:02}.{:02}",
                n / 1_000_000 % 100,
                n / 10_000 % 100,
                n / 100 % 100,
                n % 100
            )
        },
    ];
    for n in 0..100_000u32 {
        let phone = if n % 1000 == 999 {
            "12".to_owned()
        } else {
            formats[(n % 4) as usize](n + 10_000_000)
        };
        let row = format!(
            "C{n:06};Lefèvre{n};Zoé;Société Générale d'Études {n};{phone};06{:08};client{n}@exemple.fr;Orléans\r\n",
            n + 10_000_000
        );
        file.write_all(&cp1252(&row)).unwrap();
    }
    file.flush().unwrap();
    drop(file);

    let mut reports = 0;
    let batch = read_path(&path, &options(), &mut |p| {
        assert!(p.done <= p.total);
        reports += 1;
    })
    .unwrap();
    assert_eq!(batch.rows, 100_000);
    assert_eq!(batch.records.len(), 99_900);
    assert_eq!(batch.errors.len(), 100);
    assert_eq!(batch.errors[0].line, 1001);
    assert!(batch.merges.is_empty());
    assert!(reports > 10);
    let last = batch.records.last().unwrap();
    assert_eq!(last.name, "Zoé Lefèvre99998");
    assert_eq!(last.address.as_deref(), Some("Orléans"));
    assert_eq!(last.phones.len(), 2);
    assert!(last.phones.iter().all(|p| p.e164.starts_with("+33")));
}

#[test]
fn errors_can_cross_threads_and_reach_clap() {
    fn send_sync<T: Send + Sync + std::error::Error + 'static>() {}
    send_sync::<ImportError>();
    send_sync::<fiche_import::RowError>();
    send_sync::<fiche_import::ExportError>();
}

/// Random bytes after a valid header: every row ends up a record or an
/// error, and nothing panics.
#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 12] = [
        b";",
        b",",
        b"\"",
        b"\r\n",
        b"\n",
        b"06 12 34 56 78",
        b"\xe9",
        b"\xc3\xa9",
        b"'=1+1",
        b"@",
        b"a",
        b"+33 (0)1",
    ];
    for _ in 0..300 {
        let mut bytes = b"Nom;T\xe9l\xe9phone;Email;Notes\n".to_vec();
        for _ in 0..(next() % 200) {
            bytes.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
        }
        if let Ok(batch) = read_csv(bytes.as_slice(), &options(), &mut no_progress()) {
            let bad_rows = batch.bad_lines();
            let merged: usize = batch.records.iter().map(|r| r.merged_lines.len()).sum();
            assert_eq!(batch.records.len() + merged + bad_rows, batch.rows);
        }
    }
}

/// Serves `data`, then fails: a disk or network error in the middle of a file.
struct FailingReader {
    data: Vec<u8>,
    at: usize,
}

impl std::io::Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Err(std::io::Error::other("disk gone"));
        }
        let n = buf.len().min(self.data.len() - self.at).min(4096);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn rows_arrive_in_file_order_and_a_read_error_midway_is_reported() {
    // Rows are mapped on several threads in chunks; they must still come out
    // in file order, with their own line numbers.
    let mut text = String::from("Nom;Portable\r\n");
    for n in 0..30_000u32 {
        text.push_str(&format!("Client {n};06{:08}\r\n", 10_000_000 + n));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    fiche_import::read_rows(
        &write_file(dir.path(), "ordre.csv", text.as_bytes()),
        &options(),
        &mut no_progress(),
        &mut |row| match row {
            fiche_import::RowOutcome::Customer(c) => lines.push((c.line, c.name)),
            fiche_import::RowOutcome::Rejected(e) => panic!("{e:?}"),
        },
    )
    .unwrap();
    assert_eq!(lines.len(), 30_000);
    for (i, (line, name)) in lines.iter().enumerate() {
        assert_eq!(*line, i + 2);
        assert_eq!(*name, format!("Client {i}"));
    }

    // The error ends the read (no hang), naming a line.
    let reader = FailingReader {
        data: text.into_bytes(),
        at: 0,
    };
    let error = read_csv(reader, &options(), &mut no_progress()).unwrap_err();
    assert!(matches!(error, ImportError::Csv { .. }), "{error:?}");
}
