//! Who calls whom: parties from P-Asserted-Identity, Remote-Party-ID, From, To,
//! Privacy, Diversion and History-Info header values.
//!
//! Works on header values as `&str` (rsip keeps them untyped) and never fails:
//! a value that cannot be understood yields an empty party, not an error, so a
//! strange caller id never hides a call.

use crate::model::Party;
use std::borrow::Cow;

/// One `name-addr` / `addr-spec` entry of an address header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NameAddr<'a> {
    /// The display name, unquoted and unescaped (RFC 3261 `quoted-string`).
    pub(crate) display_name: Option<Cow<'a, str>>,
    /// The URI without its angle brackets.
    pub(crate) uri: &'a str,
    /// Header parameters after the URI (`;tag=...;party=calling`), leading `;` included.
    pub(crate) params: &'a str,
}

/// Splits one address entry into display name, URI and header parameters.
pub(crate) fn parse_name_addr(value: &str) -> NameAddr<'_> {
    let value = value.trim();
    let (display_name, rest) = if value.starts_with('"') {
        let (name, after) = parse_quoted(value);
        (Some(name), after.trim_start())
    } else if let Some(lt) = value.find('<') {
        let name = value[..lt].trim();
        (
            (!name.is_empty()).then_some(Cow::Borrowed(name)),
            &value[lt..],
        )
    } else {
        (None, value)
    };
    if let Some(inner) = rest.strip_prefix('<') {
        return match inner.find('>') {
            Some(gt) => NameAddr {
                display_name,
                uri: inner[..gt].trim(),
                params: &inner[gt + 1..],
            },
            None => NameAddr {
                display_name,
                uri: inner.trim(),
                params: "",
            },
        };
    }
    // addr-spec without brackets: RFC 3261 §20 says a `;` then starts the header
    // parameters, never URI parameters.
    let (uri, params) = match rest.find(';') {
        Some(i) => (rest[..i].trim(), &rest[i..]),
        None => (rest.trim(), ""),
    };
    NameAddr {
        display_name,
        uri,
        params,
    }
}

/// Reads a quoted-string starting at `s[0] == '"'`; returns the unescaped text
/// and what follows the closing quote. An unterminated string runs to the end.
fn parse_quoted(s: &str) -> (Cow<'_, str>, &str) {
    let body = &s[1..];
    let mut owned: Option<String> = None;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let text = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&body[..i]),
                };
                return (text, &body[i + 1..]);
            }
            '\\' => {
                let buf = owned.get_or_insert_with(|| body[..i].to_owned());
                if let Some((_, escaped)) = chars.next() {
                    buf.push(escaped);
                }
            }
            _ => {
                if let Some(buf) = owned.as_mut() {
                    buf.push(c);
                }
            }
        }
    }
    (owned.map_or(Cow::Borrowed(body), Cow::Owned), "")
}

/// Value of the header parameter `name` (case-insensitive) in `;a=b;c` form,
/// quotes removed; `Some("")` for a parameter without value.
pub(crate) fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let p = p.trim();
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Splits a header value holding a comma-separated list, ignoring commas inside
/// quotes and angle brackets.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let s = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        let mut depth = 0u32;
        let mut cut = None;
        for (i, b) in s.bytes().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                b'\\' if in_quotes => escaped = true,
                b'"' => in_quotes = !in_quotes,
                b'<' if !in_quotes => depth += 1,
                b'>' if !in_quotes => depth = depth.saturating_sub(1),
                b',' if !in_quotes && depth == 0 => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let item = match cut {
            Some(i) => {
                rest = Some(&s[i + 1..]);
                &s[..i]
            }
            None => {
                rest = None;
                s
            }
        };
        let item = item.trim();
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// The parts of a `sip:`, `sips:` or `tel:` URI the tracker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct UriParts<'a> {
    /// User part (sip) or subscriber number (tel), user parameters removed, still percent-encoded.
    pub(crate) user: Option<&'a str>,
    /// Host without port; empty for tel URIs.
    pub(crate) host: &'a str,
    /// Port, when present.
    pub(crate) port: Option<&'a str>,
    /// URI headers after `?` (e.g. `Replaces=...`), empty when absent.
    pub(crate) headers: &'a str,
}

/// Splits a URI; unknown schemes give empty parts.
pub(crate) fn uri_parts(uri: &str) -> UriParts<'_> {
    let uri = uri.trim();
    let Some((scheme, rest)) = uri.split_once(':') else {
        return UriParts::default();
    };
    let (rest, headers) = rest.split_once('?').unwrap_or((rest, ""));
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or("").trim();
        return UriParts {
            user: (!number.is_empty()).then_some(number),
            host: "",
            port: None,
            headers,
        };
    }
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return UriParts::default();
    }
    let (user, host_port) = match rest.find('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let user = user.split(';').next().unwrap_or("").trim();
            ((!user.is_empty()).then_some(user), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let host_port = host_port.split(';').next().unwrap_or("");
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
        (host, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    UriParts {
        user,
        host: host.trim(),
        port: port.map(str::trim).filter(|p| !p.is_empty()),
        headers,
    }
}

/// `host:port` of a sip URI, lowercase, port 5060 when absent: where a phone
/// registered (Contact) or where a proxy sends a call (Request-URI).
pub(crate) fn uri_location(uri: &str) -> Option<String> {
    let parts = uri_parts(uri);
    if parts.host.is_empty() {
        return None;
    }
    Some(format!(
        "{}:{}",
        parts.host.to_ascii_lowercase(),
        parts.port.unwrap_or("5060")
    ))
}

/// Percent-decodes a user part; keeps the text as is when decoding would not
/// give UTF-8.
pub(crate) fn decode_user(user: &str) -> Cow<'_, str> {
    if !user.contains('%') {
        return Cow::Borrowed(user);
    }
    let bytes = user.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(user),
    }
}

/// The number (decoded user part) of a URI, if any.
pub(crate) fn uri_number(uri: &str) -> Option<String> {
    uri_parts(uri)
        .user
        .map(|u| decode_user(u).into_owned())
        .filter(|u| !u.is_empty())
}

/// RFC 3323 anonymous identity: user `anonymous` or host `anonymous.invalid`.
fn is_anonymous(uri: &str) -> bool {
    let parts = uri_parts(uri);
    parts
        .user
        .is_some_and(|u| u.eq_ignore_ascii_case("anonymous"))
        || parts.host.eq_ignore_ascii_case("anonymous.invalid")
}

/// The identity-bearing header values of an initial INVITE.
#[derive(Debug, Default)]
pub(crate) struct IdentityHeaders<'a> {
    pub(crate) from: &'a str,
    pub(crate) p_asserted_identity: Vec<&'a str>,
    pub(crate) remote_party_id: Vec<&'a str>,
    pub(crate) privacy: Vec<&'a str>,
    pub(crate) diversion: Vec<&'a str>,
    pub(crate) history_info: Vec<&'a str>,
}

/// The caller: P-Asserted-Identity, then Remote-Party-ID (party=calling), then From.
///
/// Withheld when `Privacy: id` (or `user`/`header`), RPID `privacy=full|uri`, or an
/// anonymous URI in the chosen identity or in From. A withheld caller has neither
/// number nor name: the caller asked not to be identified, and the "Anonymous"
/// label such calls carry tells nothing. RPID `privacy=name` hides only the name.
pub(crate) fn caller(h: &IdentityHeaders<'_>) -> Party {
    let from = parse_name_addr(h.from);
    let pai = h
        .p_asserted_identity
        .iter()
        .flat_map(|v| split_list(v))
        .map(parse_name_addr)
        .find(|a| uri_parts(a.uri).user.is_some() || is_anonymous(a.uri));
    let rpid = h
        .remote_party_id
        .iter()
        .flat_map(|v| split_list(v))
        .map(parse_name_addr)
        .find(|a| param(a.params, "party").is_none_or(|p| p.eq_ignore_ascii_case("calling")));
    let rpid_privacy = rpid
        .as_ref()
        .and_then(|a| param(a.params, "privacy"))
        .map(str::to_ascii_lowercase);
    let privacy_header = h
        .privacy
        .iter()
        .flat_map(|v| v.split([';', ',']))
        .map(str::trim)
        .any(|p| {
            p.eq_ignore_ascii_case("id")
                || p.eq_ignore_ascii_case("user")
                || p.eq_ignore_ascii_case("header")
        });
    let chosen = pai.or(rpid).unwrap_or_else(|| from.clone());
    let withheld = privacy_header
        || matches!(rpid_privacy.as_deref(), Some("full" | "uri"))
        || is_anonymous(chosen.uri)
        || is_anonymous(from.uri);
    if withheld {
        return Party {
            number: None,
            name: None,
            withheld: true,
        };
    }
    let name = if rpid_privacy.as_deref() == Some("name") {
        None
    } else {
        chosen
            .display_name
            .or(from.display_name)
            .map(Cow::into_owned)
            .filter(|n| !n.is_empty())
    };
    Party {
        number: uri_number(chosen.uri),
        name,
        withheld: false,
    }
}

/// The callee: the To user (the dialled number) and its display name.
pub(crate) fn callee(to: &str) -> Party {
    let to = parse_name_addr(to);
    Party {
        number: uri_number(to.uri),
        name: to
            .display_name
            .map(Cow::into_owned)
            .filter(|n| !n.is_empty()),
        withheld: false,
    }
}

/// Numbers the call was forwarded from, oldest first.
///
/// Diversion lists the most recent diversion first (RFC 5806), so it is reversed.
/// History-Info lists every target in order (RFC 7044); all but the last (the
/// current target) forwarded the call. Diversion wins when both are present.
pub(crate) fn diverted_from(h: &IdentityHeaders<'_>) -> Vec<String> {
    const MAX_ENTRIES: usize = 16;
    let mut out: Vec<String> = Vec::new();
    if !h.diversion.is_empty() {
        let mut entries: Vec<String> = h
            .diversion
            .iter()
            .flat_map(|v| split_list(v))
            .filter_map(|e| uri_number(parse_name_addr(e).uri))
            .take(MAX_ENTRIES)
            .collect();
        entries.reverse();
        out = entries;
    } else if !h.history_info.is_empty() {
        let mut entries: Vec<String> = h
            .history_info
            .iter()
            .flat_map(|v| split_list(v))
            .filter_map(|e| uri_number(parse_name_addr(e).uri))
            .take(MAX_ENTRIES)
            .collect();
        entries.pop();
        out = entries;
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_display_names_are_unescaped_exactly() {
        let a = parse_name_addr(r#""Say \"hi\" <b>" <sip:1@h>;tag=x"#);
        assert_eq!(a.display_name.as_deref(), Some(r#"Say "hi" <b>"#));
        assert_eq!(a.uri, "sip:1@h");
        assert_eq!(param(a.params, "tag"), Some("x"));
        let b = parse_name_addr("Élodie Müller <sip:0612345678@h>");
        assert_eq!(b.display_name.as_deref(), Some("Élodie Müller"));
        let c = parse_name_addr("sip:201@h;tag=abc");
        assert_eq!(c.display_name, None);
        assert_eq!(c.uri, "sip:201@h");
        assert_eq!(param(c.params, "tag"), Some("abc"));
    }

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        let items: Vec<&str> = split_list(r#""a, b" <sip:1@h;x=1,2>, <tel:+33>"#).collect();
        assert_eq!(items, vec![r#""a, b" <sip:1@h;x=1,2>"#, "<tel:+33>"]);
    }

    #[test]
    fn uri_users_are_found_in_sip_and_tel() {
        assert_eq!(uri_number("sip:201@127.0.0.1:5071"), Some("201".into()));
        assert_eq!(
            uri_number("sip:%2B33612345678;npdi@h"),
            Some("+33612345678".into())
        );
        assert_eq!(
            uri_number("tel:+33612345678;phone-context=x"),
            Some("+33612345678".into())
        );
        assert_eq!(uri_number("sip:127.0.0.1"), None);
        assert_eq!(uri_number("mailto:a@b"), None);
        assert_eq!(uri_parts("sip:a@[::1]:5060").host, "::1");
        assert_eq!(
            uri_location("sip:201@127.0.0.1:5071;transport=udp"),
            Some("127.0.0.1:5071".into())
        );
        assert_eq!(
            uri_location("sip:Phone@Example.COM"),
            Some("example.com:5060".into())
        );
        assert_eq!(uri_location("sip:a@[::1]:5062"), Some("::1:5062".into()));
        assert_eq!(decode_user("100%"), "100%");
    }

    #[test]
    fn withheld_caller_has_no_number_nor_name() {
        let h = IdentityHeaders {
            from: r#""Anonymous" <sip:anonymous@anonymous.invalid>;tag=1"#,
            ..Default::default()
        };
        assert_eq!(
            caller(&h),
            Party {
                number: None,
                name: None,
                withheld: true
            }
        );
        let h = IdentityHeaders {
            from: r#""Claire" <sip:0612345678@h>;tag=1"#,
            privacy: vec!["id"],
            ..Default::default()
        };
        assert!(caller(&h).withheld);
    }

    #[test]
    fn pai_beats_rpid_beats_from() {
        let h = IdentityHeaders {
            from: r#""From" <sip:111@h>;tag=1"#,
            p_asserted_identity: vec![r#""Asserted" <sip:222@h>, <tel:+33222>"#],
            remote_party_id: vec![r#""Rpid" <sip:333@h>;party=calling"#],
            ..Default::default()
        };
        let p = caller(&h);
        assert_eq!(p.number.as_deref(), Some("222"));
        assert_eq!(p.name.as_deref(), Some("Asserted"));
        let h = IdentityHeaders {
            from: r#""From" <sip:111@h>;tag=1"#,
            remote_party_id: vec![
                r#""Called" <sip:999@h>;party=called"#,
                r#""Rpid" <sip:333@h>;party=calling;privacy=off"#,
            ],
            ..Default::default()
        };
        assert_eq!(caller(&h).number.as_deref(), Some("333"));
        let h = IdentityHeaders {
            from: r#""From" <sip:111@h>;tag=1"#,
            remote_party_id: vec![r#""Rpid" <sip:333@h>;party=calling;privacy=full"#],
            ..Default::default()
        };
        assert!(caller(&h).withheld);
    }

    #[test]
    fn forwarding_history_is_oldest_first() {
        let h = IdentityHeaders {
            diversion: vec!["<sip:202@h>;reason=no-answer, <sip:600@h>;reason=unconditional"],
            ..Default::default()
        };
        assert_eq!(
            diverted_from(&h),
            vec!["600".to_string(), "202".to_string()]
        );
        let h = IdentityHeaders {
            history_info: vec!["<sip:600@h;cause=302>;index=1", "<sip:201@h>;index=1.1"],
            ..Default::default()
        };
        assert_eq!(diverted_from(&h), vec!["600".to_string()]);
    }
}
