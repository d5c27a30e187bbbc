//! What the import and export commands say, in French (default) or English.

use fiche_import::{ImportError, MergeKey};
use fiche_store::{MatchedBy, StoreError};

use super::pipeline::{BadRow, ImportOutcome, Unusable};

/// Language of the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    /// `--lang` or `FICHE_LANG`: "en", "en_GB.UTF-8", "English"… give English,
    /// anything else French.
    pub fn from_setting(setting: Option<&str>) -> Lang {
        match setting {
            Some(value) if value.trim().to_ascii_lowercase().starts_with("en") => Lang::En,
            _ => Lang::Fr,
        }
    }
}

/// A store field name for the person importing.
fn field_name(lang: Lang, field: &str) -> &str {
    match (lang, field) {
        (Lang::Fr, "name") => "nom",
        (Lang::Fr, "company") => "société",
        (Lang::Fr, "email") => "e-mail",
        (Lang::Fr, "address") => "adresse",
        (Lang::Fr, "tags") => "étiquettes",
        (Lang::Fr, "external_ref") => "référence",
        (Lang::Fr, "raw" | "e164" | "label") => "téléphone",
        (Lang::Fr, "phones") => "téléphones",
        (Lang::En, "raw" | "e164" | "label") => "phone",
        (Lang::En, "external_ref") => "reference",
        (_, other) => other,
    }
}

/// The store's English reasons, in French where they are known.
fn reason_fr(reason: &str) -> String {
    if let Some(n) = reason
        .strip_prefix("longer than ")
        .and_then(|r| r.strip_suffix(" characters"))
    {
        return format!("plus de {n} caractères");
    }
    if let Some(n) = reason
        .strip_prefix("more than ")
        .and_then(|r| r.strip_suffix(" tags"))
    {
        return format!("plus de {n} étiquettes");
    }
    if let Some(n) = reason
        .strip_prefix("more than ")
        .and_then(|r| r.strip_suffix(" numbers"))
    {
        return format!("plus de {n} numéros");
    }
    match reason {
        "contains a NUL character" => "contient un caractère NUL".to_owned(),
        "a customer needs a name or a company" => "ni nom ni société".to_owned(),
        other => other.to_owned(),
    }
}

impl BadRow {
    /// One line of the bad-row report.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (BadRow::Row(error), Lang::Fr) => error.to_string(),
            (BadRow::Row(error), Lang::En) => error.english(),
            (
                BadRow::Refused {
                    line,
                    merged_lines,
                    field,
                    reason,
                },
                _,
            ) => {
                let field = field_name(lang, field);
                let merged = merged_lines
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                match lang {
                    Lang::Fr => {
                        let mut text = format!(
                            "ligne {line} : valeur refusée pour « {field} » : {}",
                            reason_fr(reason)
                        );
                        if !merged.is_empty() {
                            text.push_str(&format!(" (avec les lignes fusionnées {merged})"));
                        }
                        text
                    }
                    Lang::En => {
                        let mut text =
                            format!("line {line}: value refused for {field:?}: {reason}");
                        if !merged.is_empty() {
                            text.push_str(&format!(" (with merged lines {merged})"));
                        }
                        text
                    }
                }
            }
        }
    }
}

/// Why the file cannot be imported at all.
pub fn unusable(lang: Lang, error: &Unusable) -> String {
    let detail = match (lang, error) {
        (Lang::En, _) => error.to_string(),
        (Lang::Fr, Unusable::Delimiter(text)) => {
            format!("--delimiter « {text} » : un seul caractère attendu, par exemple ; , | ou tab")
        }
        (Lang::Fr, Unusable::Reader(text)) => {
            format!("la lecture du fichier s'est arrêtée : {text}")
        }
        (Lang::Fr, Unusable::File(error)) => import_error_fr(error),
    };
    match lang {
        Lang::Fr => format!("fichier inutilisable, rien n'a été importé : {detail}"),
        Lang::En => format!("unusable input, nothing imported: {detail}"),
    }
}

fn import_error_fr(error: &ImportError) -> String {
    match error {
        ImportError::Io { path, source } => {
            format!("impossible de lire {} : {source}", path.display())
        }
        ImportError::Csv { line, source } => {
            format!("erreur de syntaxe CSV vers la ligne {line} : {source}")
        }
        ImportError::Spreadsheet { path, source } => {
            format!("impossible de lire le classeur {} : {source}", path.display())
        }
        ImportError::SheetNotFound { name, available } => {
            format!("pas de feuille « {name} » ; feuilles : {}", available.join(", "))
        }
        ImportError::NoHeader => "le fichier n'a pas de ligne d'en-tête".to_owned(),
        ImportError::NoUsefulColumn { headers } => format!(
            "aucune colonne ne désigne un client (nom, société ou téléphone) ; colonnes : {} ; utilisez --map",
            headers.join(", ")
        ),
        ImportError::OverrideColumnNotFound {
            spec,
            column,
            headers,
        } => format!(
            "--map « {spec} » : pas de colonne « {column} » dans le fichier ; colonnes : {}",
            headers.join(", ")
        ),
        ImportError::BadOverride { spec } => format!(
            "--map « {spec} » : COLONNE=CHAMP attendu, CHAMP parmi name, first_name, company, phone[:libellé], email, address, postal_code, city, country, notes, tags, ref, ignore"
        ),
        ImportError::Utf16 => {
            "le fichier est en UTF-16 ; enregistrez-le en « CSV UTF-8 » ou « CSV (séparateur : point-virgule) »".to_owned()
        }
        ImportError::UnsupportedFile { path } => format!(
            "type de fichier non pris en charge {} : .csv, .txt, .xlsx, .xlsm, .xls ou .ods attendu",
            path.display()
        ),
        other => other.to_string(),
    }
}

/// A database error stopped the import.
pub fn database_failure(lang: Lang, written_records: usize, source: &StoreError) -> String {
    match lang {
        Lang::Fr if written_records == 0 => {
            format!("erreur de base de données, rien n'a été écrit : {source}")
        }
        Lang::Fr => format!(
            "erreur de base de données après {written_records} clients écrits (les lots précédents sont enregistrés ; réimporter le fichier les met à jour sans doublon) : {source}"
        ),
        Lang::En if written_records == 0 => {
            format!("database error, nothing written: {source}")
        }
        Lang::En => format!(
            "database error after {written_records} customers written (earlier batches are saved; importing the file again updates them without duplicates): {source}"
        ),
    }
}

/// Columns the file has but the import leaves out.
pub fn ignored_columns(lang: Lang, columns: &[String]) -> String {
    let list = columns
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    match lang {
        Lang::Fr => format!("colonnes non importées (--map pour les associer) : {list}"),
        Lang::En => format!("columns not imported (use --map to map them): {list}"),
    }
}

/// The error that ends a blocked import.
pub fn blocked(lang: Lang, bad_lines: usize) -> String {
    match lang {
        Lang::Fr => format!(
            "{bad_lines} ligne(s) invalide(s) : rien n'a été importé (corrigez-les, ou --skip-bad pour importer les autres)"
        ),
        Lang::En => format!(
            "{bad_lines} bad line(s): nothing imported (fix them, or --skip-bad to import the others)"
        ),
    }
}

fn matched_by(lang: Lang, key: MatchedBy) -> &'static str {
    match (lang, key) {
        (Lang::Fr, MatchedBy::ExternalRef) => "même référence",
        (Lang::Fr, MatchedBy::Email) => "même e-mail",
        (Lang::Fr, MatchedBy::Phone) => "même téléphone",
        (Lang::En, MatchedBy::ExternalRef) => "same reference",
        (Lang::En, MatchedBy::Email) => "same e-mail",
        (Lang::En, MatchedBy::Phone) => "same phone",
    }
}

fn merge_key(lang: Lang, key: &MergeKey) -> String {
    match (lang, key) {
        (Lang::Fr, MergeKey::ExternalRef(v)) => format!("même référence « {v} »"),
        (Lang::Fr, MergeKey::Email(v)) => format!("même e-mail « {v} »"),
        (Lang::Fr, MergeKey::Phone(v)) => format!("même téléphone {v}"),
        (Lang::En, MergeKey::ExternalRef(v)) => format!("same reference {v:?}"),
        (Lang::En, MergeKey::Email(v)) => format!("same e-mail {v:?}"),
        (Lang::En, MergeKey::Phone(v)) => format!("same phone {v}"),
    }
}

/// The dry run's account of what would change, before the summary line.
pub fn dry_run_details(lang: Lang, outcome: &ImportOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    let fr = lang == Lang::Fr;
    lines.push(if fr {
        format!("Nouveaux clients : {}", outcome.inserted)
    } else {
        format!("New customers: {}", outcome.inserted)
    });
    lines.push(if fr {
        format!(
            "Clients existants mis à jour : {} (lignes rapprochées par référence : {}, par e-mail : {}, par téléphone : {})",
            outcome.updated, outcome.updated_by_ref, outcome.updated_by_email, outcome.updated_by_phone
        )
    } else {
        format!(
            "Existing customers updated: {} (rows matched by reference: {}, by e-mail: {}, by phone: {})",
            outcome.updated, outcome.updated_by_ref, outcome.updated_by_email, outcome.updated_by_phone
        )
    });
    for (line, id, key) in &outcome.update_examples {
        lines.push(if fr {
            format!(
                "  ligne {line} → client n° {} ({})",
                id.0,
                matched_by(lang, *key)
            )
        } else {
            format!(
                "  line {line} → customer #{} ({})",
                id.0,
                matched_by(lang, *key)
            )
        });
    }
    let updated_rows = outcome.updated_by_ref + outcome.updated_by_email + outcome.updated_by_phone;
    if updated_rows > outcome.update_examples.len() {
        lines.push(more(lang, updated_rows - outcome.update_examples.len()));
    }
    lines.push(if fr {
        format!(
            "Doublons fusionnés dans le fichier : {}",
            outcome.merged_in_file()
        )
    } else {
        format!(
            "Duplicates merged within the file: {}",
            outcome.merged_in_file()
        )
    });
    let merges = outcome
        .file_merges
        .iter()
        .map(|m| (m.merged_line, m.kept_line, merge_key(lang, &m.key)))
        .chain(
            outcome
                .store_merges
                .iter()
                .map(|(line, kept, key)| (*line, *kept, matched_by(lang, *key).to_owned())),
        );
    for (line, kept, key) in merges.take(super::pipeline::EXAMPLES) {
        lines.push(if fr {
            format!("  ligne {line} fusionnée avec la ligne {kept} ({key})")
        } else {
            format!("  line {line} merged into line {kept} ({key})")
        });
    }
    if outcome.merged_in_file() > super::pipeline::EXAMPLES {
        lines.push(more(
            lang,
            outcome.merged_in_file() - super::pipeline::EXAMPLES,
        ));
    }
    lines.push(if fr {
        format!(
            "Lignes invalides : {} (détail sur la sortie d'erreur)",
            outcome.bad_lines()
        )
    } else {
        format!(
            "Bad lines: {} (listed on standard error)",
            outcome.bad_lines()
        )
    });
    lines
}

fn more(lang: Lang, n: usize) -> String {
    match lang {
        Lang::Fr => format!("  … et {n} autre(s)"),
        Lang::En => format!("  … and {n} more"),
    }
}

/// The final line.
pub fn summary(lang: Lang, o: &ImportOutcome) -> String {
    let bad = o.bad_lines();
    let merged = o.merged_in_file();
    match lang {
        Lang::Fr if o.dry_run => {
            let tail = if o.blocked() {
                " ; sans --skip-bad, rien ne serait importé"
            } else {
                ""
            };
            format!(
                "Simulation, rien n'a été écrit : {} lignes lues, {} clients seraient créés, {} mis à jour, {merged} doublons fusionnés dans le fichier, {bad} lignes invalides{tail}.",
                o.rows, o.inserted, o.updated
            )
        }
        Lang::Fr if o.blocked() => format!(
            "Import refusé, rien n'a été écrit : {} lignes lues, {bad} lignes invalides.",
            o.rows
        ),
        Lang::Fr => format!(
            "Import terminé : {} lignes lues, {} clients créés, {} mis à jour, {merged} doublons fusionnés dans le fichier, {bad} lignes invalides ignorées.",
            o.rows, o.inserted, o.updated
        ),
        Lang::En if o.dry_run => {
            let tail = if o.blocked() {
                "; without --skip-bad nothing would be imported"
            } else {
                ""
            };
            format!(
                "Dry run, nothing written: {} rows read, {} customers would be created, {} updated, {merged} duplicates merged within the file, {bad} bad lines{tail}.",
                o.rows, o.inserted, o.updated
            )
        }
        Lang::En if o.blocked() => format!(
            "Import refused, nothing written: {} rows read, {bad} bad lines.",
            o.rows
        ),
        Lang::En => format!(
            "Import done: {} rows read, {} customers created, {} updated, {merged} duplicates merged within the file, {bad} bad lines skipped.",
            o.rows, o.inserted, o.updated
        ),
    }
}
