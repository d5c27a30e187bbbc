//! `res.partner` records to Fiche customers, without IO.
//!
//! Odoo writes an unset field as `false`, a many2one as `[id, "display name"]`, a
//! many2many as a list of ids, and `comment` (internal notes) as HTML.

use std::collections::HashMap;

use fiche_matcher::{normalise, NumberKind, NumberPolicy};
use fiche_store::{NewCustomer, NewPhone};
use serde_json::Value;

use crate::error::{OdooError, Result};

/// The prefix of every external reference Fiche gives an Odoo partner.
pub const REF_PREFIX: &str = "odoo:res.partner:";

/// The partner fields read on every version (`mobile` is added where it exists:
/// Odoo 19 removed it from `res.partner`).
pub const PARTNER_FIELDS: &[&str] = &[
    "name",
    "is_company",
    "commercial_partner_id",
    "phone",
    "email",
    "street",
    "street2",
    "zip",
    "city",
    "country_id",
    "comment",
    "category_id",
    "active",
    "write_date",
];

/// `odoo:res.partner:<id>`.
pub fn external_ref(id: i64) -> String {
    format!("{REF_PREFIX}{id}")
}

/// The partner id of an external reference made by [`external_ref`].
pub fn partner_id(external_ref: &str) -> Option<i64> {
    external_ref.strip_prefix(REF_PREFIX)?.parse().ok()
}

/// A number of a partner that could not be read as a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadNumber {
    /// The partner.
    pub partner_id: i64,
    /// `phone` or `mobile`.
    pub field: &'static str,
    /// As typed in Odoo.
    pub raw: String,
}

/// One partner read from Odoo.
#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    /// Its id in Odoo.
    pub id: i64,
    /// `write_date`, as Odoo writes it (`2026-12-06 09:15:02`, UTC).
    pub write_date: String,
    /// False for an archived partner.
    pub active: bool,
    /// Its content as a Fiche customer.
    pub customer: NewCustomer,
    /// Numbers kept as typed (so digits still match) but not understood.
    pub bad_numbers: Vec<BadNumber>,
}

/// Reads one record of `search_read` on `res.partner`; `tags` maps
/// `res.partner.category` ids to their names.
pub fn read_partner(
    record: &Value,
    tags: &HashMap<i64, String>,
    policy: &NumberPolicy,
) -> Result<Partner> {
    let id = record
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| OdooError::protocol("res.partner.search_read", "a record without an id"))?;
    let text = |field: &str| -> Option<String> {
        record
            .get(field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let is_company = record.get("is_company").and_then(Value::as_bool) == Some(true);
    let own_name = text("name");
    // The commercial partner is the company a contact belongs to (itself for a
    // company or a lone person).
    let company = match record.get("commercial_partner_id") {
        Some(Value::Array(pair)) if pair.first().and_then(Value::as_i64) != Some(id) => pair
            .get(1)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        _ => None,
    };
    let name = match (&own_name, is_company) {
        (Some(name), _) => name.clone(),
        // A contact without a name (an address of a company): the company shows.
        (None, _) if company.is_some() => String::new(),
        (None, _) => text("email").unwrap_or_else(|| format!("Odoo #{id}")),
    };
    let country = match record.get("country_id") {
        Some(Value::Array(pair)) => pair.get(1).and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let city_line = [text("zip"), text("city")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let address = [
        text("street"),
        text("street2"),
        Some(city_line).filter(|s| !s.is_empty()),
        country,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n");
    let mut customer_tags = Vec::new();
    if let Some(Value::Array(ids)) = record.get("category_id") {
        for tag in ids.iter().filter_map(Value::as_i64) {
            if let Some(name) = tags.get(&tag) {
                customer_tags.push(name.clone());
            }
        }
    }
    let mut phones = Vec::new();
    let mut bad_numbers = Vec::new();
    for (field, label) in [("phone", "téléphone"), ("mobile", "mobile")] {
        let Some(raw) = text(field) else { continue };
        let e164 = match normalise(&raw, policy) {
            NumberKind::E164(e164) => Some(e164),
            _ => {
                bad_numbers.push(BadNumber {
                    partner_id: id,
                    field,
                    raw: raw.clone(),
                });
                None
            }
        };
        if e164.is_none() && !raw.chars().any(|c| c.is_ascii_digit()) {
            // Nothing to match on: reported, not stored.
            continue;
        }
        phones.push(NewPhone {
            e164,
            raw,
            label: Some(label.to_owned()),
        });
    }
    Ok(Partner {
        id,
        write_date: text("write_date").unwrap_or_default(),
        active: record.get("active").and_then(Value::as_bool) != Some(false),
        customer: NewCustomer {
            name,
            company: if is_company { None } else { company },
            email: text("email").filter(|e| e.contains('@') && !e.contains(char::is_whitespace)),
            address: Some(address).filter(|a| !a.is_empty()),
            notes: text("comment")
                .map(|html| html_to_text(&html))
                .filter(|t| !t.is_empty()),
            tags: customer_tags,
            external_ref: Some(external_ref(id)),
            phones,
        },
        bad_numbers,
    })
}

/// The text of Odoo's HTML notes: tags dropped, paragraphs and line breaks kept
/// as new lines, the common entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        if tag.starts_with("br")
            || tag.starts_with("/p")
            || tag.starts_with("/div")
            || tag.starts_with("/li")
        {
            out.push('\n');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags() -> HashMap<i64, String> {
        HashMap::from([(1, "VIP".to_owned()), (2, "Grossiste".to_owned())])
    }

    #[test]
    fn a_contact_of_a_company_becomes_a_customer_with_its_company() {
        let record = json!({
            "id": 42, "name": "Hélène Lefèvre", "is_company": false,
            "commercial_partner_id": [7, "Boulangerie Lefèvre"],
            "phone": "01 42 68 53 00", "mobile": "06 11 22 33 44",
            "email": "helene@example.fr", "street": "3 rue des Lilas", "street2": false,
            "zip": "75011", "city": "Paris", "country_id": [75, "France"],
            "comment": "<p>Préfère être appelée <b>le matin</b></p><p>&amp; jamais le lundi</p>",
            "category_id": [1, 9], "active": true, "write_date": "2026-12-06 09:15:02"
        });
        let partner = read_partner(&record, &tags(), &NumberPolicy::default()).unwrap();
        let c = &partner.customer;
        assert_eq!(c.name, "Hélène Lefèvre");
        assert_eq!(c.company.as_deref(), Some("Boulangerie Lefèvre"));
        assert_eq!(
            c.address.as_deref(),
            Some("3 rue des Lilas\n75011 Paris\nFrance")
        );
        assert_eq!(
            c.notes.as_deref(),
            Some("Préfère être appelée le matin\n& jamais le lundi")
        );
        assert_eq!(c.tags, vec!["VIP".to_owned()]);
        assert_eq!(c.external_ref.as_deref(), Some("odoo:res.partner:42"));
        let e164: Vec<_> = c.phones.iter().map(|p| p.e164.clone()).collect();
        assert_eq!(
            e164,
            vec![
                Some("+33142685300".to_owned()),
                Some("+33611223344".to_owned())
            ]
        );
        assert!(partner.bad_numbers.is_empty());
        assert!(partner.active);
        assert_eq!(partner_id("odoo:res.partner:42"), Some(42));
    }

    #[test]
    fn unreadable_numbers_are_reported_by_partner_and_archived_partners_say_so() {
        let record = json!({
            "id": 9, "name": "Zoé", "is_company": false, "commercial_partner_id": [9, "Zoé"],
            "phone": "voir avec Paul", "email": false, "active": false, "write_date": "2026-12-06 09:00:00"
        });
        let partner = read_partner(&record, &tags(), &NumberPolicy::default()).unwrap();
        assert_eq!(
            partner.bad_numbers,
            vec![BadNumber {
                partner_id: 9,
                field: "phone",
                raw: "voir avec Paul".to_owned()
            }]
        );
        assert!(partner.customer.phones.is_empty());
        assert!(!partner.active);
        assert_eq!(partner.customer.company, None);
    }
}
