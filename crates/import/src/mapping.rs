//! Which column holds what: headers are matched case- and accent-
//! insensitively against French and English names, then `--map` overrides
//! are applied.

use crate::error::ImportError;

/// Phone labels are product text, stored with the number and shown to agents.
pub const LABEL_PHONE: &str = "téléphone";
pub const LABEL_MOBILE: &str = "portable";
pub const LABEL_LANDLINE: &str = "fixe";
pub const LABEL_FAX: &str = "fax";
pub const LABEL_OFFICE: &str = "bureau";
pub const LABEL_HOME: &str = "domicile";
pub const LABEL_SWITCHBOARD: &str = "standard";

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    ExternalRef,
    /// Last name, or the full name; joined after [`Field::FirstName`].
    Name,
    FirstName,
    Company,
    Phone {
        label: String,
    },
    Email,
    /// Street lines; joined with ", " and followed by postal code and city.
    Address,
    PostalCode,
    City,
    Country,
    Notes,
    /// Split on `,`, `;` and `|`.
    Tags,
    Ignore,
}

impl Field {
    /// Parses the FIELD of a `--map COLUMN=FIELD` override.
    fn from_spec(spec: &str) -> Option<Field> {
        let (kind, label) = match spec.split_once(':') {
            Some((kind, label)) => (kind, Some(label.trim())),
            None => (spec, None),
        };
        let kind = normalise_header(kind);
        if let Some(label) = label {
            return match kind.as_str() {
                "phone" | "telephone" | "tel" if !label.is_empty() => Some(Field::Phone {
                    label: label.to_lowercase(),
                }),
                _ => None,
            };
        }
        Some(match kind.as_str() {
            "name" | "nom" => Field::Name,
            "first name" | "firstname" | "prenom" => Field::FirstName,
            "company" | "societe" => Field::Company,
            "phone" | "telephone" | "tel" => Field::Phone {
                label: LABEL_PHONE.to_owned(),
            },
            "mobile" | "portable" => Field::Phone {
                label: LABEL_MOBILE.to_owned(),
            },
            "email" | "e mail" | "courriel" => Field::Email,
            "address" | "adresse" => Field::Address,
            "postal code" | "code postal" | "cp" | "zip" => Field::PostalCode,
            "city" | "ville" => Field::City,
            "country" | "pays" => Field::Country,
            "notes" | "note" => Field::Notes,
            "tags" | "etiquettes" => Field::Tags,
            "ref" | "reference" | "external ref" | "external reference" => Field::ExternalRef,
            "ignore" | "skip" | "ignorer" => Field::Ignore,
            _ => return None,
        })
    }
}

/// A `--map "COLUMN=FIELD"` override, e.g. `Tel. bureau=phone:bureau`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnOverride {
    /// The header as written in the file (compared case/accent-insensitively).
    pub column: String,
    pub field: Field,
    spec: String,
}

impl std::str::FromStr for ColumnOverride {
    type Err = ImportError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = || ImportError::BadOverride {
            spec: spec.to_owned(),
        };
        let (column, field) = spec.rsplit_once('=').ok_or_else(bad)?;
        if column.trim().is_empty() {
            return Err(bad());
        }
        let field = Field::from_spec(field.trim()).ok_or_else(bad)?;
        Ok(ColumnOverride {
            column: column.trim().to_owned(),
            field,
            spec: spec.to_owned(),
        })
    }
}

/// The role of each column of one file.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    /// Headers as written, one per column.
    pub headers: Vec<String>,
    /// One entry per column.
    pub fields: Vec<Field>,
    /// Headers recognised as nothing; their cells are not imported.
    pub ignored: Vec<String>,
}

impl ColumnMap {
    /// Maps `headers`, applies `overrides`, and checks that at least one
    /// column can identify a customer.
    pub fn new(headers: Vec<String>, overrides: &[ColumnOverride]) -> Result<Self, ImportError> {
        let mut fields: Vec<Field> = headers.iter().map(|h| guess_field(h)).collect();
        let keys: Vec<String> = headers.iter().map(|h| normalise_header(h)).collect();
        for over in overrides {
            let wanted = normalise_header(&over.column);
            let mut found = false;
            for (key, field) in keys.iter().zip(fields.iter_mut()) {
                if *key == wanted {
                    *field = over.field.clone();
                    found = true;
                }
            }
            if !found {
                return Err(ImportError::OverrideColumnNotFound {
                    spec: over.spec.clone(),
                    column: over.column.clone(),
                    headers,
                });
            }
        }
        let useful = fields.iter().any(|f| {
            matches!(
                f,
                Field::Name | Field::FirstName | Field::Company | Field::Phone { .. }
            )
        });
        if !useful {
            return Err(ImportError::NoUsefulColumn { headers });
        }
        let explicitly_ignored: Vec<&str> = overrides
            .iter()
            .filter(|o| o.field == Field::Ignore)
            .map(|o| o.column.as_str())
            .collect();
        let ignored = headers
            .iter()
            .zip(&fields)
            .filter(|(h, f)| {
                **f == Field::Ignore
                    && !h.trim().is_empty()
                    && !explicitly_ignored
                        .iter()
                        .any(|c| normalise_header(c) == normalise_header(h))
            })
            .map(|(h, _)| h.clone())
            .collect();
        Ok(ColumnMap {
            headers,
            fields,
            ignored,
        })
    }
}

/// Lowercase, accents folded, punctuation turned into single spaces:
/// "Tél. Portable" → "tel portable", "E-mail" → "e mail", "N° client" →
/// "n client".
pub fn normalise_header(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut space = true;
    for c in header.chars().flat_map(char::to_lowercase) {
        let folded: &str = match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => "a",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'î' | 'ï' | 'í' | 'ì' => "i",
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => "o",
            'ù' | 'û' | 'ü' | 'ú' => "u",
            'ç' => "c",
            'ÿ' => "y",
            'ñ' => "n",
            'œ' => "oe",
            'æ' => "ae",
            c if c.is_alphanumeric() => {
                out.push(c);
                space = false;
                continue;
            }
            _ => {
                if !space {
                    out.push(' ');
                    space = true;
                }
                continue;
            }
        };
        out.push_str(folded);
        space = false;
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

fn phone(label: &str) -> Option<Field> {
    Some(Field::Phone {
        label: label.to_owned(),
    })
}

fn known_field(key: &str) -> Option<Field> {
    Some(match key {
        "nom" | "name" | "nom complet" | "full name" | "nom de famille" | "last name"
        | "lastname" | "surname" | "contact" | "nom du contact" | "nom contact"
        | "contact name" | "client" | "nom client" | "customer" | "customer name" => Field::Name,
        "prenom" | "first name" | "firstname" | "given name" | "prenom du contact" => {
            Field::FirstName
        }
        "societe" | "entreprise" | "company" | "company name" | "organisation" | "organization"
        | "raison sociale" | "etablissement" | "nom de la societe" | "nom societe" | "business" => {
            Field::Company
        }
        "telephone"
        | "tel"
        | "phone"
        | "phone number"
        | "numero de telephone"
        | "num tel"
        | "no tel"
        | "n tel"
        | "telephone number" => return phone(LABEL_PHONE),
        "portable" | "mobile" | "gsm" | "cell" | "cellphone" | "cell phone" | "mobile phone"
        | "tel portable" | "telephone portable" | "tel mobile" | "telephone mobile" => {
            return phone(LABEL_MOBILE)
        }
        "fixe" | "tel fixe" | "telephone fixe" | "landline" => return phone(LABEL_LANDLINE),
        "fax" | "telecopie" | "fax number" => return phone(LABEL_FAX),
        "bureau" | "tel bureau" | "telephone bureau" | "work phone" | "office phone"
        | "business phone" => return phone(LABEL_OFFICE),
        "domicile" | "tel domicile" | "telephone domicile" | "home phone" => {
            return phone(LABEL_HOME)
        }
        "standard" | "tel standard" | "telephone standard" | "switchboard" => {
            return phone(LABEL_SWITCHBOARD)
        }
        "email" | "e mail" | "mail" | "courriel" | "adresse email" | "adresse e mail"
        | "adresse mail" | "email address" | "e mail address" | "mel" => Field::Email,
        "adresse"
        | "address"
        | "rue"
        | "adresse postale"
        | "street"
        | "street address"
        | "complement d adresse"
        | "complement adresse"
        | "address line"
        | "voie" => Field::Address,
        "code postal" | "cp" | "postal code" | "zip" | "zip code" | "postcode" => Field::PostalCode,
        "ville" | "city" | "commune" | "localite" | "town" => Field::City,
        "pays" | "country" => Field::Country,
        "notes" | "note" | "commentaire" | "commentaires" | "remarque" | "remarques"
        | "observations" | "observation" | "comments" | "comment" | "description" => Field::Notes,
        "tags" | "tag" | "etiquettes" | "etiquette" | "labels" | "categorie" | "categories"
        | "category" => Field::Tags,
        "reference" | "ref" | "ref client" | "reference client" | "code client"
        | "external ref" | "external reference" | "id" | "identifiant" | "numero client"
        | "n client" | "no client" | "num client" | "customer id" | "client id"
        | "customer number" | "customer ref" | "account number" => Field::ExternalRef,
        _ => return None,
    })
}

/// The field a header most likely names; `Field::Ignore` if none.
fn guess_field(header: &str) -> Field {
    let key = normalise_header(header);
    if let Some(field) = known_field(&key) {
        return field;
    }
    // "Portable 2", "Adresse 2", "Email 2".
    if let Some((base, number)) = key.rsplit_once(' ') {
        if number.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(field) = known_field(base) {
                return field;
            }
        }
    }
    // "Tél. secrétariat", "Phone (assistant)": a phone whose label is the
    // rest of the header, as written.
    for prefix in ["tel ", "telephone ", "phone "] {
        if key.starts_with(prefix) {
            let label = header
                .trim()
                .split_once(|c: char| c.is_whitespace() || c == '.' || c == '(')
                .map(|(_, rest)| rest)
                .unwrap_or_default()
                .trim_matches(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '.')
                .to_lowercase();
            if !label.is_empty() {
                return Field::Phone { label };
            }
        }
    }
    Field::Ignore
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(header: &str, expected: Field) {
        assert_eq!(guess_field(header), expected, "header {header:?}");
    }

    fn phone(label: &str) -> Field {
        Field::Phone {
            label: label.to_owned(),
        }
    }

    #[test]
    fn french_and_english_headers() {
        check("Nom", Field::Name);
        check("NOM", Field::Name);
        check("Prénom", Field::FirstName);
        check("First name", Field::FirstName);
        check("Société", Field::Company);
        check("SOCIETE", Field::Company);
        check("Entreprise", Field::Company);
        check("Téléphone", phone("téléphone"));
        check("Tél.", phone("téléphone"));
        check("Tel", phone("téléphone"));
        check("Portable", phone("portable"));
        check("GSM", phone("portable"));
        check("Mobile", phone("portable"));
        check("Fixe", phone("fixe"));
        check("Fax", phone("fax"));
        check("Portable 2", phone("portable"));
        check("Tél. bureau", phone("bureau"));
        check("Tél. secrétariat", phone("secrétariat"));
        check("E-mail", Field::Email);
        check("Courriel", Field::Email);
        check("Adresse", Field::Address);
        check("Code postal", Field::PostalCode);
        check("Ville", Field::City);
        check("Commentaire", Field::Notes);
        check("Étiquettes", Field::Tags);
        check("Réf.", Field::ExternalRef);
        check("Code client", Field::ExternalRef);
        check("N° client", Field::ExternalRef);
        check("ID", Field::ExternalRef);
        check("Chiffre d'affaires", Field::Ignore);
        check("", Field::Ignore);
    }

    #[test]
    fn overrides_parse() {
        let over: ColumnOverride = "Tel. bureau=phone:Bureau".parse().unwrap();
        assert_eq!(over.column, "Tel. bureau");
        assert_eq!(over.field, phone("bureau"));
        let over: ColumnOverride = "Raison=company".parse().unwrap();
        assert_eq!(over.field, Field::Company);
        assert!("nothing".parse::<ColumnOverride>().is_err());
        assert!("A=unknown_field".parse::<ColumnOverride>().is_err());
        assert!("=name".parse::<ColumnOverride>().is_err());
    }
}
