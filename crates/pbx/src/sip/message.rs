//! From captured bytes to the few facts the call tracker needs.
//!
//! Three steps, cheapest first, so that the OPTIONS/REGISTER flood costs
//! almost nothing:
//! 1. [`normalise`]: bound the size, drop keep-alive CRLFs, and repair what
//!    rsip 0.4 refuses (bare-LF line ends, folded header lines, blanks before
//!    the colon, a missing blank line after the headers, non-UTF-8 header bytes).
//! 2. [`StartLine::parse`] and [`prescan`]: method or status, Call-ID and CSeq
//!    method, read directly from the bytes so uninteresting traffic is dropped
//!    before rsip allocates.
//! 3. [`SipFacts::extract`] on the `rsip::SipMessage`: typed access to the
//!    headers, with compact forms (`i`, `f`, `t`, `v`, `r`, `c`, ...) mapped here
//!    because rsip files them as unknown `Other` headers.

use super::SipError;
use rsip::headers::UntypedHeader;
use rsip::Header;
use std::borrow::Cow;

/// The largest SIP message accepted: the largest HEP packet.
pub(crate) const MAX_MESSAGE_LEN: usize = 65_535;

/// Via entries kept per message; deeper stacks are loops or attacks.
const MAX_VIAS: usize = 16;

/// Extra list entries kept per identity header.
const MAX_HEADER_REPEATS: usize = 8;

/// A message rsip can parse: CRLF line ends and a blank line after the head.
#[derive(Debug)]
pub(crate) struct Normalised<'a> {
    pub(crate) bytes: Cow<'a, [u8]>,
    /// Length of the head (start line and headers), without the final CRLF CRLF.
    pub(crate) head_len: usize,
}

impl Normalised<'_> {
    pub(crate) fn head(&self) -> &[u8] {
        &self.bytes[..self.head_len]
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Prepares `payload` for rsip; `Ok(None)` for a keep-alive (only line ends and blanks).
pub(crate) fn normalise(payload: &[u8]) -> Result<Option<Normalised<'_>>, SipError> {
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(SipError::TooLarge {
            len: payload.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let Some(start) = payload
        .iter()
        .position(|&b| !(b == b'\r' || b == b'\n' || is_blank(b)))
    else {
        return Ok(None);
    };
    let msg = &payload[start..];

    // One pass over the head: find its end and whether rsip would choke on it.
    let mut clean = true;
    let mut pos = 0;
    let mut body_start = None;
    let mut head_end = msg.len();
    let mut first = true;
    while pos < msg.len() {
        let Some(i) = msg[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let line_end = pos + i;
        let next = line_end + 1;
        let has_cr = line_end > pos && msg[line_end - 1] == b'\r';
        if !has_cr {
            clean = false;
        }
        let line = &msg[pos..if has_cr { line_end - 1 } else { line_end }];
        if line.is_empty() {
            head_end = pos;
            body_start = Some(next);
            break;
        }
        if !first {
            if is_blank(line[0]) {
                clean = false;
            } else if let Some(colon) = line.iter().position(|&b| b == b':') {
                if colon > 0 && is_blank(line[colon - 1]) {
                    clean = false;
                }
            }
        }
        first = false;
        pos = next;
    }
    let Some(body_start) = body_start else {
        // No blank line: the whole message is head, there is no body.
        return Ok(Some(rebuild(msg, msg.len(), &[])));
    };
    // rsip needs the blank line right after the head, as CRLF CRLF.
    let head = &msg[..head_end];
    if clean && std::str::from_utf8(head).is_ok() && head_end >= 2 {
        return Ok(Some(Normalised {
            bytes: Cow::Borrowed(msg),
            head_len: head_end - 2,
        }));
    }
    Ok(Some(rebuild(
        msg,
        head_end,
        &msg[body_start.min(msg.len())..],
    )))
}

/// Rewrites the head with CRLF line ends, unfolded headers and no blanks
/// before colons; invalid UTF-8 in the head becomes U+FFFD so the call is still
/// tracked (an old phone's Latin-1 display name must not hide a call).
fn rebuild<'a>(msg: &[u8], head_end: usize, body: &[u8]) -> Normalised<'a> {
    let mut out: Vec<u8> = Vec::with_capacity(msg.len() + 32);
    for (i, raw) in msg[..head_end].split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if i > 0 && is_blank(line[0]) {
            // Continuation line (RFC 3261 §7.3.1): joins the previous header.
            while out.last().copied().is_some_and(is_blank) {
                out.pop();
            }
            out.push(b' ');
            let trimmed = line
                .iter()
                .position(|&b| !is_blank(b))
                .unwrap_or(line.len());
            out.extend_from_slice(&line[trimmed..]);
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) if i > 0 => {
                let name_end = line[..colon]
                    .iter()
                    .rposition(|&b| !is_blank(b))
                    .map_or(0, |p| p + 1);
                out.extend_from_slice(&line[..name_end]);
                out.extend_from_slice(&line[colon..]);
            }
            _ => out.extend_from_slice(line),
        }
    }
    if std::str::from_utf8(&out).is_err() {
        out = String::from_utf8_lossy(&out).into_owned().into_bytes();
    }
    let head_len = out.len();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    Normalised {
        bytes: Cow::Owned(out),
        head_len,
    }
}

/// The start line, read without rsip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { code: u16, reason: &'a str },
}

impl<'a> StartLine<'a> {
    /// Reads the first line of a normalised head.
    pub(crate) fn parse(head: &'a [u8]) -> Result<Self, SipError> {
        let line_end = head
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(head.len());
        let line = std::str::from_utf8(&head[..line_end]).map_err(|_| SipError::Parse {
            what: "start line",
            detail: "not UTF-8".into(),
        })?;
        if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
            let rest = rest.trim_start();
            let code_text = rest.get(..3).unwrap_or(rest);
            let code = code_text
                .parse::<u16>()
                .ok()
                .filter(|c| {
                    (100..=699).contains(c)
                        && code_text.bytes().all(|b| b.is_ascii_digit())
                        && matches!(rest.as_bytes().get(3), None | Some(b' '))
                })
                .ok_or_else(|| SipError::Parse {
                    what: "status line",
                    detail: format!("bad status code {}", excerpt(code_text)),
                })?;
            let reason = rest.get(3..).unwrap_or("").trim();
            return Ok(StartLine::Response { code, reason });
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("");
        let uri = parts.next().unwrap_or("");
        let version = parts.next().unwrap_or("");
        let is_token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        };
        if is_token(method) && !uri.is_empty() && version == "SIP/2.0" && parts.next().is_none() {
            return Ok(StartLine::Request { method, uri });
        }
        Err(SipError::Parse {
            what: "start line",
            detail: format!("neither a request nor a status line: {}", excerpt(line)),
        })
    }
}

/// A short, escaped piece of untrusted text for error messages.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Call-ID and CSeq method, read from the raw head.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Prescan<'a> {
    pub(crate) call_id: Option<&'a str>,
    pub(crate) cseq_method: Option<&'a str>,
}

/// Finds Call-ID (or `i`) and the CSeq method in a normalised head.
pub(crate) fn prescan(head: &[u8]) -> Prescan<'_> {
    let mut out = Prescan::default();
    let Ok(head) = std::str::from_utf8(head) else {
        return out;
    };
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Call-ID") || name == "i" || name == "I" {
            out.call_id.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("CSeq") {
            out.cseq_method
                .get_or_insert(value.split_ascii_whitespace().nth(1).unwrap_or(""));
        }
        if out.call_id.is_some() && out.cseq_method.is_some() {
            break;
        }
    }
    out
}

/// What kind of message, with the part of the start line the tracker uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MessageKind<'a> {
    Request {
        method: rsip::Method,
        /// User part of the Request-URI (the extension a proxied INVITE targets).
        request_user: Option<String>,
        /// The Request-URI as written on the start line.
        request_uri: &'a str,
    },
    Response {
        code: u16,
        reason: &'a str,
    },
}

/// What the tracker needs from one message.
#[derive(Debug)]
pub(crate) struct SipFacts<'a> {
    pub(crate) kind: MessageKind<'a>,
    pub(crate) call_id: &'a str,
    pub(crate) cseq: u32,
    pub(crate) cseq_method: &'a str,
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) from_tag: Option<&'a str>,
    pub(crate) to_tag: Option<&'a str>,
    /// Via branches, top first ("" for an entry without branch).
    pub(crate) branches: Vec<&'a str>,
    pub(crate) p_asserted_identity: Vec<&'a str>,
    pub(crate) remote_party_id: Vec<&'a str>,
    pub(crate) privacy: Vec<&'a str>,
    pub(crate) diversion: Vec<&'a str>,
    pub(crate) history_info: Vec<&'a str>,
    pub(crate) reason: Option<&'a str>,
    pub(crate) refer_to: Option<&'a str>,
    /// Contact header values (REGISTER bindings).
    pub(crate) contacts: Vec<&'a str>,
    pub(crate) expires: Option<&'a str>,
    pub(crate) body: &'a [u8],
}

fn push_bounded<'a>(list: &mut Vec<&'a str>, value: &'a str) {
    if list.len() < MAX_HEADER_REPEATS {
        list.push(value);
    }
}

impl<'a> SipFacts<'a> {
    /// Reads the facts from a parsed message; `start` supplies the reason phrase
    /// rsip drops for well-known status codes.
    pub(crate) fn extract(
        message: &'a rsip::SipMessage,
        start: StartLine<'a>,
    ) -> Result<Self, SipError> {
        let (kind, headers, body) = match message {
            rsip::SipMessage::Request(request) => (
                MessageKind::Request {
                    method: request.method,
                    // From the start line, not rsip's URI: rsip keeps user
                    // parameters (`+336...;npdi`) in the user.
                    request_user: match start {
                        StartLine::Request { uri, .. } => super::identity::uri_number(uri),
                        StartLine::Response { .. } => None,
                    },
                    request_uri: match start {
                        StartLine::Request { uri, .. } => uri,
                        StartLine::Response { .. } => "",
                    },
                },
                &request.headers,
                &request.body,
            ),
            rsip::SipMessage::Response(response) => (
                MessageKind::Response {
                    code: response.status_code.code(),
                    reason: match start {
                        StartLine::Response { reason, .. } => reason,
                        StartLine::Request { .. } => "",
                    },
                },
                &response.headers,
                &response.body,
            ),
        };
        let mut call_id = None;
        let mut cseq = None;
        let mut from = None;
        let mut to = None;
        let mut facts = SipFacts {
            kind,
            call_id: "",
            cseq: 0,
            cseq_method: "",
            from: "",
            to: "",
            from_tag: None,
            to_tag: None,
            branches: Vec::new(),
            p_asserted_identity: Vec::new(),
            remote_party_id: Vec::new(),
            privacy: Vec::new(),
            diversion: Vec::new(),
            history_info: Vec::new(),
            reason: None,
            refer_to: None,
            contacts: Vec::new(),
            expires: None,
            body: body.as_slice(),
        };
        for header in headers.iter() {
            match header {
                Header::CallId(h) => {
                    call_id.get_or_insert(h.value());
                }
                Header::CSeq(h) => {
                    cseq.get_or_insert(h.value());
                }
                Header::From(h) => {
                    from.get_or_insert(h.value());
                }
                Header::To(h) => {
                    to.get_or_insert(h.value());
                }
                Header::Via(h) => facts.add_vias(h.value()),
                Header::Contact(h) => push_bounded(&mut facts.contacts, h.value().trim()),
                Header::Expires(h) => {
                    facts.expires.get_or_insert(h.value().trim());
                }
                Header::Other(name, value) => {
                    facts.other(name, value, &mut call_id, &mut from, &mut to)
                }
                _ => {}
            }
        }
        facts.call_id = call_id
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(SipError::MissingHeader("Call-ID"))?;
        let cseq = cseq.ok_or(SipError::MissingHeader("CSeq"))?;
        let mut cseq_parts = cseq.split_ascii_whitespace();
        facts.cseq =
            cseq_parts
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or(SipError::InvalidHeader {
                    header: "CSeq",
                    reason: "sequence number is not a 32-bit number",
                })?;
        facts.cseq_method = cseq_parts.next().ok_or(SipError::InvalidHeader {
            header: "CSeq",
            reason: "method missing",
        })?;
        facts.from = from.ok_or(SipError::MissingHeader("From"))?;
        facts.to = to.ok_or(SipError::MissingHeader("To"))?;
        let tag = |value: &'a str| {
            super::identity::param(super::identity::parse_name_addr(value).params, "tag")
                .filter(|t| !t.is_empty())
        };
        facts.from_tag = tag(facts.from);
        facts.to_tag = tag(facts.to);
        if facts.branches.is_empty() {
            return Err(SipError::MissingHeader("Via"));
        }
        Ok(facts)
    }

    fn add_vias(&mut self, value: &'a str) {
        for entry in super::identity::split_list(value) {
            if self.branches.len() >= MAX_VIAS {
                return;
            }
            let params = entry.split_once(';').map_or("", |(_, p)| p);
            self.branches
                .push(super::identity::param(params, "branch").unwrap_or(""));
        }
    }

    fn other(
        &mut self,
        name: &'a str,
        value: &'a str,
        call_id: &mut Option<&'a str>,
        from: &mut Option<&'a str>,
        to: &mut Option<&'a str>,
    ) {
        let is = |long: &str| name.eq_ignore_ascii_case(long);
        let value = value.trim();
        if name.len() == 1 {
            match name.as_bytes()[0].to_ascii_lowercase() {
                b'i' => {
                    call_id.get_or_insert(value);
                }
                b'f' => {
                    from.get_or_insert(value);
                }
                b't' => {
                    to.get_or_insert(value);
                }
                b'v' => self.add_vias(value),
                b'r' => {
                    self.refer_to.get_or_insert(value);
                }
                b'm' => push_bounded(&mut self.contacts, value),
                _ => {}
            }
        } else if is("P-Asserted-Identity") {
            push_bounded(&mut self.p_asserted_identity, value);
        } else if is("Remote-Party-ID") {
            push_bounded(&mut self.remote_party_id, value);
        } else if is("Privacy") {
            push_bounded(&mut self.privacy, value);
        } else if is("Diversion") {
            push_bounded(&mut self.diversion, value);
        } else if is("History-Info") {
            push_bounded(&mut self.history_info, value);
        } else if is("Reason") {
            self.reason.get_or_insert(value);
        } else if is("Refer-To") {
            self.refer_to.get_or_insert(value);
        }
    }
}

/// Parses a normalised message with rsip, as a request or a response as the
/// start line says: `rsip::SipMessage::try_from` would first try the other kind,
/// and every failed rsip attempt formats the whole message into its error text.
///
/// rsip 0.4 refuses Request-URIs it cannot split into user/host/port (`tel:`
/// URIs, IPv6 hosts) and status lines without a reason phrase; the tracker reads
/// the start line itself, so such a message is parsed again with a placeholder
/// start line.
pub(crate) fn parse(bytes: &[u8], start: StartLine<'_>) -> Result<rsip::SipMessage, SipError> {
    let to_error = |e: rsip::Error| SipError::Parse {
        what: "message",
        detail: excerpt(&e.to_string()),
    };
    let first = match start {
        StartLine::Response { .. } => rsip::Response::try_from(bytes).map(rsip::SipMessage::from),
        StartLine::Request { .. } => rsip::Request::try_from(bytes).map(rsip::SipMessage::from),
    };
    let error = match first {
        Ok(message) => return Ok(message),
        Err(error) => error,
    };
    // Retry with a start line rsip accepts: what the tracker needs from it was
    // already read by `StartLine::parse`.
    let line_end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(bytes.len());
    if line_end >= bytes.len() {
        return Err(to_error(error));
    }
    let mut retry = Vec::with_capacity(bytes.len() + 16);
    match start {
        StartLine::Request { method, .. } => {
            retry.extend_from_slice(method.as_bytes());
            retry.extend_from_slice(b" sip:request-uri.invalid SIP/2.0");
        }
        // rsip needs a blank after the status code, which some phones omit.
        StartLine::Response { code, .. } => {
            retry.extend_from_slice(format!("SIP/2.0 {code} -").as_bytes());
        }
    }
    retry.extend_from_slice(&bytes[line_end..]);
    let second = match start {
        StartLine::Response { .. } => {
            rsip::Response::try_from(retry.as_slice()).map(rsip::SipMessage::from)
        }
        StartLine::Request { .. } => {
            rsip::Request::try_from(retry.as_slice()).map(rsip::SipMessage::from)
        }
    };
    second.map_err(|_| to_error(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        let n = normalise(text.as_bytes()).unwrap().unwrap();
        String::from_utf8(n.bytes.into_owned()).unwrap()
    }

    #[test]
    fn clean_messages_are_borrowed() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nbody";
        let n = normalise(text.as_bytes()).unwrap().unwrap();
        assert!(matches!(n.bytes, Cow::Borrowed(_)));
        assert_eq!(n.head(), b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x");
    }

    #[test]
    fn bare_lf_folding_and_blank_before_colon_are_repaired() {
        assert_eq!(
            norm("\r\nBYE sip:a@b SIP/2.0\nSubject: one\n  two\nCall-ID : x\n\nv=0\n"),
            "BYE sip:a@b SIP/2.0\r\nSubject: one two\r\nCall-ID: x\r\n\r\nv=0\n"
        );
        assert_eq!(
            norm("BYE sip:a@b SIP/2.0\r\nCall-ID: x"),
            "BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"
        );
    }

    #[test]
    fn keepalives_are_nothing_and_giants_are_refused() {
        assert!(normalise(b"\r\n\r\n").unwrap().is_none());
        assert!(matches!(
            normalise(&vec![b'a'; MAX_MESSAGE_LEN + 1]),
            Err(SipError::TooLarge { .. })
        ));
    }

    #[test]
    fn start_lines_are_recognised() {
        assert_eq!(
            StartLine::parse(b"SIP/2.0 486 Busy Here\r\nVia: x").unwrap(),
            StartLine::Response {
                code: 486,
                reason: "Busy Here"
            }
        );
        assert_eq!(
            StartLine::parse(b"INVITE sip:201@h SIP/2.0").unwrap(),
            StartLine::Request {
                method: "INVITE",
                uri: "sip:201@h"
            }
        );
        assert!(StartLine::parse(b"SIP/2.0 abc Nope").is_err());
        assert!(StartLine::parse(b"\x00\x01garbage").is_err());
        assert!(StartLine::parse(b"HELLO world").is_err());
    }
}
