//! Planning a batch upsert: for each row, a new customer, a duplicate of an existing
//! one, or of an earlier row, by reference, then e-mail, then number
//! (`fiche_model::Identity`).

use super::*;

/// Where a batch row goes while planning.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Existing(CustomerId),
    Row(usize),
}

/// The targets holding one number: almost always one, kept inline then.
pub(super) enum Targets {
    One(Target),
    Many(Vec<Target>),
}

impl Targets {
    fn as_slice(&self) -> &[Target] {
        match self {
            Targets::One(target) => std::slice::from_ref(target),
            Targets::Many(targets) => targets,
        }
    }

    fn add(&mut self, target: Target) {
        if self.as_slice().contains(&target) {
            return;
        }
        match self {
            Targets::One(first) => *self = Targets::Many(vec![*first, target]),
            Targets::Many(targets) => targets.push(target),
        }
    }
}

/// Who `target` currently is.
pub(super) fn identity<'a>(
    target: Target,
    batch_rows: &[Option<Identity<'a>>],
    existing: &'a HashMap<CustomerId, Customer>,
) -> Option<Identity<'a>> {
    match target {
        Target::Existing(id) => existing.get(&id).map(Customer::identity),
        Target::Row(i) => batch_rows.get(i).copied().flatten(),
    }
}

/// `email` in lower case, borrowed when it already is (the common case).
pub(super) fn lower(email: &str) -> Cow<'_, str> {
    if email
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(email)
    } else {
        Cow::Owned(email.to_lowercase())
    }
}

/// Decides, for each cleaned row, whether it is new, a duplicate of an existing customer
/// or of an earlier row. `existing` holds the matched customers' current content.
/// Keys are borrowed from the rows: a batch costs no copy of its texts.
pub(super) fn plan<'a>(
    rows: &[&'a NewCustomer],
    matches: &MergeMatches,
    existing: &'a HashMap<CustomerId, Customer>,
) -> Vec<UpsertAction> {
    // Keys already claimed by earlier rows of the batch (new customers or merges).
    let mut batch_refs: HashMap<&str, Target> = HashMap::with_capacity(rows.len());
    let mut batch_emails: HashMap<Cow<'_, str>, Target> = HashMap::with_capacity(rows.len());
    let mut batch_phones: HashMap<&str, Targets> = HashMap::with_capacity(rows.len());
    // Who each new row's customer currently is, as the rows merged into it say.
    let mut batch_rows: Vec<Option<Identity<'a>>> = vec![None; rows.len()];
    let mut actions = Vec::with_capacity(rows.len());

    let identity_of = |target: Target, batch_rows: &[Option<Identity<'a>>]| {
        identity(target, batch_rows, existing)
    };

    for (index, row) in rows.iter().copied().enumerate() {
        let who = row.identity();
        let email_key = row.email.as_deref().map(lower);
        let mut decision: Option<(Target, MatchedBy)> = None;
        if let Some(key) = &row.external_ref {
            if let Some(target) = batch_refs.get(key.as_str()) {
                decision = Some((*target, MatchedBy::ExternalRef));
            } else if let Some(id) = matches.by_external_ref.get(key) {
                decision = Some((Target::Existing(*id), MatchedBy::ExternalRef));
            }
        }
        if decision.is_none() {
            if let Some(key) = &email_key {
                let candidate = match batch_emails.get(key.as_ref()) {
                    Some(target) => Some(*target),
                    None => match matches.by_email.get(key.as_ref()).map(Vec::as_slice) {
                        Some([id]) => Some(Target::Existing(*id)),
                        _ => None,
                    },
                };
                if let Some(target) = candidate {
                    if let Some(other) = identity_of(target, &batch_rows) {
                        if who.same_by_email(&other) {
                            decision = Some((target, MatchedBy::Email));
                        }
                    }
                }
            }
        }
        if decision.is_none() {
            'phones: for phone in &row.phones {
                let Some(e164) = &phone.e164 else { continue };
                let mut candidates: Vec<Target> = Vec::new();
                if let Some(ids) = matches.by_e164.get(e164) {
                    candidates.extend(ids.iter().map(|id| Target::Existing(*id)));
                }
                if let Some(targets) = batch_phones.get(e164.as_str()) {
                    for target in targets.as_slice() {
                        if !candidates.contains(target) {
                            candidates.push(*target);
                        }
                    }
                }
                // A number shared by several customers (a switchboard) says nothing about
                // who this row is.
                if let [target] = candidates.as_slice() {
                    if let Some(other) = identity_of(*target, &batch_rows) {
                        if who.same_by_phone(&other) {
                            decision = Some((*target, MatchedBy::Phone));
                            break 'phones;
                        }
                    }
                }
            }
        }

        let target = match decision {
            Some((Target::Existing(id), matched_by)) => {
                actions.push(UpsertAction::Update { id, matched_by });
                Target::Existing(id)
            }
            Some((Target::Row(row_index), matched_by)) => {
                actions.push(UpsertAction::MergeIntoRow {
                    row: row_index,
                    matched_by,
                });
                Target::Row(row_index)
            }
            None => {
                actions.push(UpsertAction::Insert);
                batch_rows[index] = Some(who);
                Target::Row(index)
            }
        };
        // Later rows find this one by any of its keys.
        if let Some(key) = &row.external_ref {
            batch_refs.entry(key.as_str()).or_insert(target);
        }
        if let Some(key) = email_key {
            batch_emails.entry(key).or_insert(target);
        }
        for phone in &row.phones {
            if let Some(e164) = &phone.e164 {
                match batch_phones.entry(e164.as_str()) {
                    std::collections::hash_map::Entry::Occupied(mut slot) => {
                        slot.get_mut().add(target)
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(Targets::One(target));
                    }
                }
            }
        }
        // A row merged into a new one changes it as `merge_into` will.
        if let Target::Row(i) = target {
            if let Some(Some(held)) = batch_rows.get_mut(i) {
                if !who.name.is_empty() {
                    held.name = who.name;
                }
                held.company = who.company.or(held.company);
                held.email = who.email.or(held.email);
                held.external_ref = held.external_ref.or(who.external_ref);
            }
        }
    }
    actions
}

pub(super) fn merge_keys(rows: &[&NewCustomer]) -> MergeKeys {
    let mut keys = MergeKeys::default();
    let mut refs: HashSet<&str> = HashSet::with_capacity(rows.len());
    let mut emails: HashSet<Cow<'_, str>> = HashSet::with_capacity(rows.len());
    let mut e164s: HashSet<&str> = HashSet::with_capacity(rows.len());
    for row in rows {
        if let Some(key) = &row.external_ref {
            if refs.insert(key.as_str()) {
                keys.external_refs.push(key.clone());
            }
        }
        if let Some(email) = &row.email {
            let key = lower(email);
            if !emails.contains(key.as_ref()) {
                keys.emails.push(key.clone().into_owned());
                emails.insert(key);
            }
        }
        for phone in &row.phones {
            if let Some(e164) = &phone.e164 {
                if e164s.insert(e164.as_str()) {
                    keys.e164s.push(e164.clone());
                }
            }
        }
    }
    keys
}

pub(super) fn existing_ids(matches: &MergeMatches) -> Vec<i64> {
    let mut ids: Vec<i64> = matches
        .by_external_ref
        .values()
        .chain(matches.by_email.values().flatten())
        .chain(matches.by_e164.values().flatten())
        .map(|id| id.0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
