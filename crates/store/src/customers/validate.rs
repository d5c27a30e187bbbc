//! Validation: a row cleaned and bounded before it is written (names, e-mail and
//! E.164 shapes, lengths), merging one row into another, and the same-person identity.

use super::*;

pub(super) fn clean_opt(
    field: &'static str,
    value: &Option<String>,
    max_chars: usize,
) -> Result<Option<String>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => {
            check_len(field, text, max_chars)?;
            Ok(Some(text.to_owned()))
        }
    }
}

pub(super) fn check_len(field: &'static str, text: &str, max_chars: usize) -> Result<()> {
    if text.chars().count() > max_chars {
        return Err(StoreError::invalid(
            field,
            format!("longer than {max_chars} characters"),
        ));
    }
    if text.contains('\0') {
        return Err(StoreError::invalid(field, "contains a NUL character"));
    }
    Ok(())
}

/// Checks the shape of a normalised number: `+`, then 2 to 15 digits, not starting with 0.
pub(crate) fn check_e164(field: &'static str, e164: &str) -> Result<()> {
    let digits = e164.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            field,
            format!("{e164:?} is not an E.164 number (+ and up to 15 digits)"),
        ))
    }
}

pub(super) fn clean_phone(phone: &NewPhone) -> Result<NewPhone> {
    let raw = phone.raw.trim();
    check_len("raw", raw, MAX_SHORT_CHARS)?;
    let e164 = clean_opt("e164", &phone.e164, 16)?;
    if let Some(e164) = &e164 {
        check_e164("e164", e164)?;
    }
    let raw = if raw.is_empty() {
        match &e164 {
            Some(e164) => e164.clone(),
            None => return Err(StoreError::invalid("raw", "the phone number is empty")),
        }
    } else {
        raw.to_owned()
    };
    Ok(NewPhone {
        e164,
        raw,
        label: clean_opt("label", &phone.label, MAX_SHORT_CHARS)?,
    })
}

/// The number's identity inside one customer: its E.164 form, or its digits.
pub(super) fn phone_key(phone: &NewPhone) -> String {
    match &phone.e164 {
        Some(e164) => e164.clone(),
        None => phone.raw.chars().filter(char::is_ascii_digit).collect(),
    }
}

/// Trims, drops empty values and duplicates, and checks bounds.
pub(super) fn clean_customer(customer: &NewCustomer) -> Result<NewCustomer> {
    let name = customer.name.trim().to_owned();
    check_len("name", &name, MAX_SHORT_CHARS)?;
    let company = clean_opt("company", &customer.company, MAX_SHORT_CHARS)?;
    if name.is_empty() && company.is_none() {
        return Err(StoreError::invalid(
            "name",
            "a customer needs a name or a company",
        ));
    }
    let email = clean_opt("email", &customer.email, MAX_SHORT_CHARS)?;
    if let Some(email) = &email {
        if !email.contains('@') || email.chars().any(char::is_whitespace) {
            return Err(StoreError::invalid(
                "email",
                format!("{email:?} is not an email address"),
            ));
        }
    }
    let mut tags: Vec<String> = Vec::with_capacity(customer.tags.len());
    for tag in &customer.tags {
        let tag = tag.trim();
        check_len("tags", tag, MAX_SHORT_CHARS)?;
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(StoreError::invalid(
            "tags",
            format!("more than {MAX_TAGS} tags"),
        ));
    }
    let mut phones: Vec<NewPhone> = Vec::with_capacity(customer.phones.len());
    let mut keys = HashSet::new();
    for phone in &customer.phones {
        let phone = clean_phone(phone)?;
        // The same number twice on one customer (Téléphone and Portable columns holding
        // the same value) is kept once.
        if keys.insert(phone_key(&phone)) {
            phones.push(phone);
        }
    }
    if phones.len() > MAX_PHONES {
        return Err(StoreError::invalid(
            "phones",
            format!("more than {MAX_PHONES} numbers"),
        ));
    }
    Ok(NewCustomer {
        name,
        company,
        email,
        address: clean_opt("address", &customer.address, MAX_TEXT_CHARS)?,
        notes: clean_opt("notes", &customer.notes, MAX_TEXT_CHARS)?,
        tags,
        external_ref: clean_opt("external_ref", &customer.external_ref, MAX_SHORT_CHARS)?,
        phones,
    })
}

pub(super) fn tags_json(tags: &[String]) -> String {
    // Serialising a list of strings cannot fail.
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}

/// Folds `incoming` into `target`: values present in `incoming` win, tags are united,
/// numbers not yet held are added. Nothing present in `target` is ever erased.
pub(super) fn merge_into(target: &mut NewCustomer, incoming: &NewCustomer) {
    if !incoming.name.is_empty() {
        target.name.clone_from(&incoming.name);
    }
    for (field, value) in [
        (&mut target.company, &incoming.company),
        (&mut target.email, &incoming.email),
        (&mut target.address, &incoming.address),
        (&mut target.notes, &incoming.notes),
    ] {
        if value.is_some() {
            field.clone_from(value);
        }
    }
    if target.external_ref.is_none() {
        target.external_ref.clone_from(&incoming.external_ref);
    }
    for tag in &incoming.tags {
        if !target.tags.contains(tag) {
            target.tags.push(tag.clone());
        }
    }
    let held: HashSet<String> = target.phones.iter().map(phone_key).collect();
    for phone in &incoming.phones {
        if !held.contains(&phone_key(phone)) {
            target.phones.push(phone.clone());
        }
    }
}

impl Customer {
    /// What the customer's file says about who it is, for the same-person rule.
    pub fn identity(&self) -> Identity<'_> {
        identity_of(&self.name, &self.company, &self.email, &self.external_ref)
    }
}

pub(super) fn identity_of<'a>(
    name: &'a str,
    company: &'a Option<String>,
    email: &'a Option<String>,
    external_ref: &'a Option<String>,
) -> Identity<'a> {
    Identity {
        name,
        company: company.as_deref(),
        email: email.as_deref(),
        external_ref: external_ref.as_deref(),
    }
}

pub(super) fn customer_to_new(customer: &Customer) -> NewCustomer {
    NewCustomer {
        name: customer.name.clone(),
        company: customer.company.clone(),
        email: customer.email.clone(),
        address: customer.address.clone(),
        notes: customer.notes.clone(),
        tags: customer.tags.clone(),
        external_ref: customer.external_ref.clone(),
        phones: customer
            .phones
            .iter()
            .map(|p| NewPhone {
                e164: p.e164.clone(),
                raw: p.raw.clone(),
                label: p.label.clone(),
            })
            .collect(),
    }
}

impl NewCustomer {
    /// What the record says about who it is, for the same-person rule.
    pub fn identity(&self) -> Identity<'_> {
        identity_of(&self.name, &self.company, &self.email, &self.external_ref)
    }

    /// Checks the row as the store would (bounds, email shape, E.164 shape, a name or a
    /// company), so an importer can report every bad row before writing anything.
    pub fn validate(&self) -> Result<()> {
        clean_customer(self).map(|_| ())
    }

    /// [`NewCustomer::validate`], keeping the result: the row trimmed, its duplicate
    /// tags and numbers dropped, ready for [`Store::upsert_checked_batch`].
    pub fn check(&self) -> Result<CheckedCustomer> {
        clean_customer(self).map(CheckedCustomer)
    }
}

/// A customer row that passed the store's checks ([`NewCustomer::check`]); only the
/// store can make one, so a batch of them needs no second check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCustomer(pub(super) NewCustomer);

impl CheckedCustomer {
    /// The checked content.
    pub fn get(&self) -> &NewCustomer {
        &self.0
    }
}

pub(super) fn check_batch_size(rows: usize) -> Result<()> {
    if rows > MAX_BATCH_ROWS {
        return Err(StoreError::invalid(
            "rows",
            format!("{rows} rows in one batch, at most {MAX_BATCH_ROWS}"),
        ));
    }
    Ok(())
}
