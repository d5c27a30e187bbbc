//! When two customer records are the same person: one rule for the import's
//! merge of duplicates inside a file and the store's upsert against the file
//! already held, so importing a file and importing it again decide alike.
//!
//! Records are joined on their strongest shared key: an external reference,
//! then an e-mail address, then a phone number. A shared number is weak (a
//! switchboard, a family line), so it joins two records only when nothing else
//! they say contradicts it.

/// What a customer record says about who it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The person's name ("First Last"); may be empty when a company is named.
    pub name: &'a str,
    /// The company.
    pub company: Option<&'a str>,
    /// The e-mail address.
    pub email: Option<&'a str>,
    /// The reference in the system the records came from.
    pub external_ref: Option<&'a str>,
}

impl Identity<'_> {
    /// Whether a shared e-mail address makes the two one person: unless they
    /// carry two different external references.
    pub fn same_by_email(&self, other: &Identity<'_>) -> bool {
        !conflict(self.external_ref, other.external_ref)
    }

    /// Whether a shared phone number makes the two one person: when neither
    /// their references, e-mails, names nor companies contradict each other.
    /// Names are compared with case and word order aside ("Durand Marie" is
    /// "marie durand"); an empty value contradicts nothing.
    pub fn same_by_phone(&self, other: &Identity<'_>) -> bool {
        self.same_by_email(other)
            && !conflict(self.email, other.email)
            && !conflict(self.company, other.company)
            && names_agree(self.name, other.name)
    }
}

/// Two values that are both present and differ once trimmed and lower-cased.
fn conflict(a: Option<&str>, b: Option<&str>) -> bool {
    match (a.map(str::trim), b.map(str::trim)) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
            a != b
                && !a
                    .chars()
                    .flat_map(char::to_lowercase)
                    .eq(b.chars().flat_map(char::to_lowercase))
        }
        _ => false,
    }
}

fn names_agree(a: &str, b: &str) -> bool {
    fn words(s: &str) -> Vec<String> {
        let mut words: Vec<String> = s.split_whitespace().map(str::to_lowercase).collect();
        words.sort_unstable();
        words
    }
    a.trim().is_empty() || b.trim().is_empty() || a == b || words(a) == words(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(
        name: &'a str,
        company: Option<&'a str>,
        email: Option<&'a str>,
        external_ref: Option<&'a str>,
    ) -> Identity<'a> {
        Identity {
            name,
            company,
            email,
            external_ref,
        }
    }

    #[test]
    fn the_rule_of_the_same_person() {
        let marie = who(
            "Marie Durand",
            Some("Boulangerie Durand"),
            Some("marie@durand.fr"),
            Some("C1"),
        );
        // (other record, same on a shared e-mail, same on a shared number, why)
        let table = [
            (
                who("durand  MARIE", None, None, None),
                true,
                true,
                "case and word order aside",
            ),
            (
                who("", Some("boulangerie durand "), None, Some("c1")),
                true,
                true,
                "empty name, folded company and reference",
            ),
            (
                who("Marie Durand", None, None, Some("C2")),
                false,
                false,
                "two references",
            ),
            (
                who("Marie Durand", None, Some("marie.d@gmail.com"), None),
                true,
                false,
                "two e-mails behind one number",
            ),
            (
                who("Paul Durand", None, None, None),
                true,
                false,
                "a family line: two names",
            ),
            (
                who("Marie Durand", Some("Garage Martin"), None, None),
                true,
                false,
                "a switchboard: two companies",
            ),
            (
                who("", None, None, None),
                true,
                true,
                "nothing said contradicts nothing",
            ),
        ];
        for (other, by_email, by_phone, why) in table {
            assert_eq!(marie.same_by_email(&other), by_email, "e-mail: {why}");
            assert_eq!(marie.same_by_phone(&other), by_phone, "phone: {why}");
            assert_eq!(other.same_by_phone(&marie), by_phone, "symmetric: {why}");
        }
    }
}
