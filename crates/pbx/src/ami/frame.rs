//! AMI framing: bytes from the manager socket in, whole messages out.
//!
//! A message is `Key: Value` lines ended by an empty line; the connection opens
//! with one banner line that is not a message; the legacy `Response: Follows`
//! reply carries raw CLI text up to `--END COMMAND--`. The framer is
//! incremental (any split of the input gives the same messages), accepts CRLF
//! and LF, decodes non-UTF-8 bytes lossily and never buffers more than
//! [`MAX_MESSAGE_LEN`] bytes for one message.

use bytes::{Buf, BytesMut};
use memchr::memmem;
use std::ops::Range;
use std::sync::LazyLock;

/// The largest message kept, in bytes. A peer that never ends its message gets
/// an error and the framer drops bytes up to the next empty line.
pub const MAX_MESSAGE_LEN: usize = 1024 * 1024;

/// What the AMI server sends first, before any message.
const BANNER_PREFIX: &str = "Asterisk Call Manager/";

/// The line that ends the legacy `Response: Follows` command output.
const END_COMMAND: &[u8] = b"--END COMMAND--";

/// Errors of the AMI framing layer. The framer has already skipped the bad
/// message when it returns one of these: decoding can go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmiError {
    /// A message grew past the cap without an empty line.
    #[error(
        "AMI message longer than {limit} bytes without an end; skipped to the next empty line"
    )]
    Oversize {
        /// The cap in bytes.
        limit: usize,
    },
    /// A line of a message is not `Key: Value`.
    #[error("AMI message line {line} has no `:` separator; message skipped")]
    MalformedLine {
        /// 1-based line number within the message.
        line: usize,
    },
}

/// One AMI message: an ordered multimap of `Key: Value` fields.
///
/// Keys keep their spelling and order; lookups ignore ASCII case, as the
/// protocol says. The text is held once and fields are spans into it, so a
/// message costs two allocations whatever its size.
#[derive(Clone, PartialEq, Eq)]
pub struct AmiMessage {
    text: String,
    fields: Vec<(Range<u32>, Range<u32>)>,
}

impl AmiMessage {
    /// Builds a message from fields (used by encoders and tests).
    pub fn from_fields<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> Self {
        let mut message = AmiMessage {
            text: String::new(),
            fields: Vec::with_capacity(fields.len()),
        };
        for (key, value) in fields {
            message.push(key.as_ref(), value.as_ref());
        }
        message
    }

    fn push(&mut self, key: &str, value: &str) {
        let key_start = self.text.len() as u32;
        self.text.push_str(key);
        let key_end = self.text.len() as u32;
        self.text.push_str(value);
        let value_end = self.text.len() as u32;
        self.fields.push((key_start..key_end, key_end..value_end));
    }

    fn slice(&self, range: &Range<u32>) -> &str {
        self.text
            .get(range.start as usize..range.end as usize)
            .unwrap_or_default()
    }

    /// The first value of `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| self.slice(k).eq_ignore_ascii_case(key))
            .map(|(_, v)| self.slice(v))
    }

    /// Every value of `key`, in order (e.g. `ChanVariable`, `Output`).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| self.slice(k).eq_ignore_ascii_case(key))
            .map(|(_, v)| self.slice(v))
    }

    /// All fields in order, keys as received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields
            .iter()
            .map(|(k, v)| (self.slice(k), self.slice(v)))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the message has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The `Event` name, when this is an event.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// The `Response` value, when this is a reply to an action.
    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    /// The `ActionID` this message answers or belongs to.
    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }
}

impl std::fmt::Debug for AmiMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are untrusted text: Debug escapes them. Secrets never reach a
        // received message, so nothing is redacted here.
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Incremental AMI decoder with the contract `decode(&mut BytesMut) -> Result<Option<AmiMessage>, AmiError>`.
#[derive(Debug, Default)]
pub struct AmiFramer {
    /// The version announced by the banner, once seen.
    banner: Option<String>,
    /// Bytes of the buffer already known to hold no message end, so a slow
    /// peer does not make every read rescan the whole buffer.
    scanned: usize,
    /// Dropping an oversize message: discard input up to the next empty line.
    discarding: bool,
    /// The previous discard ended on a line end; an empty line right at the
    /// start of the buffer then ends the discard.
    discard_at_line_start: bool,
}

impl AmiFramer {
    /// A framer at the start of a connection (or of a recorded stream).
    pub fn new() -> Self {
        Self::default()
    }

    /// The AMI version announced by the banner (`Asterisk Call Manager/7.0.3` → `7.0.3`).
    pub fn banner_version(&self) -> Option<&str> {
        self.banner.as_deref()
    }

    /// Decodes the next message. `Ok(None)`: more bytes are needed. `Err`: a bad
    /// message was skipped; call again to go on.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<AmiMessage>, AmiError> {
        loop {
            if self.discarding {
                if !self.discard(buf) {
                    return Ok(None);
                }
                continue;
            }
            // Empty lines between messages and the banner line are not messages.
            match skip_preamble(buf, &mut self.banner) {
                Preamble::NeedMore => return Ok(None),
                Preamble::Skipped => {
                    self.scanned = 0;
                    continue;
                }
                Preamble::Message => {}
            }
            let follows = starts_with_follows(buf);
            let end = if follows {
                find_follows_end(buf, self.scanned)
            } else {
                find_blank_line(buf, self.scanned)
            };
            let Some((body_end, consumed)) = end else {
                if buf.len() > MAX_MESSAGE_LEN {
                    self.discarding = true;
                    self.discard_at_line_start = false;
                    self.scanned = 0;
                    // Keep the last byte: it may be the first half of "\n\n".
                    let keep = 1;
                    buf.advance(buf.len() - keep);
                    return Err(AmiError::Oversize {
                        limit: MAX_MESSAGE_LEN,
                    });
                }
                // Back off a few bytes: the end marker may straddle reads.
                self.scanned = buf.len().saturating_sub(END_COMMAND.len() + 4);
                return Ok(None);
            };
            self.scanned = 0;
            if body_end > MAX_MESSAGE_LEN {
                buf.advance(consumed);
                return Err(AmiError::Oversize {
                    limit: MAX_MESSAGE_LEN,
                });
            }
            let parsed = parse_message(&buf[..body_end], follows);
            buf.advance(consumed);
            return parsed.map(Some);
        }
    }

    /// Drops bytes up to and including the next empty line; true once found.
    fn discard(&mut self, buf: &mut BytesMut) -> bool {
        if self.discard_at_line_start {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                self.discarding = false;
                return true;
            }
            if buf.starts_with(b"\n") {
                buf.advance(1);
                self.discarding = false;
                return true;
            }
            if buf.is_empty() || buf[..] == b"\r"[..] {
                return false;
            }
            self.discard_at_line_start = false;
        }
        if let Some((_, consumed)) = find_blank_line(buf, 0) {
            buf.advance(consumed);
            self.discarding = false;
            return true;
        }
        // Keep a short tail that may hold the start of the empty line.
        let keep = buf.len().min(3);
        let tail_is_line_end = buf.ends_with(b"\n");
        buf.advance(buf.len() - keep);
        if tail_is_line_end && keep == 1 {
            buf.advance(1);
            self.discard_at_line_start = true;
        }
        false
    }
}

enum Preamble {
    NeedMore,
    Skipped,
    Message,
}

fn skip_preamble(buf: &mut BytesMut, banner: &mut Option<String>) -> Preamble {
    if buf.is_empty() {
        return Preamble::NeedMore;
    }
    if buf[0] == b'\n' {
        buf.advance(1);
        return Preamble::Skipped;
    }
    if buf[0] == b'\r' {
        if buf.len() < 2 {
            return Preamble::NeedMore;
        }
        if buf[1] == b'\n' {
            buf.advance(2);
            return Preamble::Skipped;
        }
        return Preamble::Message;
    }
    let prefix = BANNER_PREFIX.as_bytes();
    let common = buf.len().min(prefix.len());
    if buf[..common].eq_ignore_ascii_case(&prefix[..common]) {
        if common < prefix.len() {
            return Preamble::NeedMore;
        }
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            if buf.len() > MAX_MESSAGE_LEN {
                // Not a banner any more: let the message path bound it.
                return Preamble::Message;
            }
            return Preamble::NeedMore;
        };
        let line = trim_cr(&buf[prefix.len()..nl]);
        *banner = Some(String::from_utf8_lossy(line).into_owned());
        buf.advance(nl + 1);
        return Preamble::Skipped;
    }
    Preamble::Message
}

fn starts_with_follows(buf: &[u8]) -> bool {
    const FOLLOWS: &[u8] = b"response: follows";
    buf.len() >= FOLLOWS.len() && buf[..FOLLOWS.len()].eq_ignore_ascii_case(FOLLOWS) && {
        let rest = &buf[FOLLOWS.len()..];
        rest.is_empty() || rest[0] == b'\r' || rest[0] == b'\n' || rest[0] == b' '
    }
}

/// Finds the empty line ending a message that starts at 0: returns the end of
/// the message body and the number of bytes to consume.
fn find_blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    // A blank line is "\n\r\n" (Asterisk) or "\n\n" (LF-only recordings).
    // The LF form is only searched before the first CRLF one, so each message
    // costs one pass over its own bytes.
    static CRLF_BLANK: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\n\r\n"));
    static LF_BLANK: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\n\n"));
    let hay = buf.get(from..)?;
    let crlf = CRLF_BLANK.find(hay);
    let limit = crlf.map_or(hay.len(), |q| q + 1);
    let lf = LF_BLANK.find(&hay[..limit]);
    match (lf, crlf) {
        (Some(p), _) => Some((from + p + 1, from + p + 2)),
        (None, Some(q)) => Some((from + q + 1, from + q + 3)),
        (None, None) => None,
    }
}

/// Finds the `--END COMMAND--` line of a `Response: Follows` message, and the
/// empty line after it when present.
fn find_follows_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    // Start at a line beginning so the marker is matched as a whole line.
    let mut at = match from {
        0 => 0,
        _ => memchr::memrchr(b'\n', &buf[..from]).map_or(0, |p| p + 1),
    };
    loop {
        let nl = at + memchr::memchr(b'\n', &buf[at..])?;
        let line = trim_cr(&buf[at..nl]);
        if line.ends_with(END_COMMAND) {
            // The marker line ends the body; an empty line may follow it.
            let after = nl + 1;
            let consumed = if buf[after..].starts_with(b"\r\n") {
                after + 2
            } else if buf[after..].starts_with(b"\n") {
                after + 1
            } else if after == buf.len() || buf[after..] == b"\r"[..] {
                // Wait for the empty line so that it is not read as a message start.
                return None;
            } else {
                after
            };
            return Some((at, consumed));
        }
        at = nl + 1;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_message(body: &[u8], follows: bool) -> Result<AmiMessage, AmiError> {
    if follows {
        return parse_follows(body);
    }
    // One copy of the message; fields are spans into it.
    let text = match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let bytes = text.as_bytes();
    let mut fields = Vec::with_capacity(24);
    let mut start = 0;
    let mut line = 0;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |p| start + p);
        let mut line_end = end;
        if line_end > start && bytes[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        line += 1;
        if line_end > start {
            let Some(colon) = memchr::memchr(b':', &bytes[start..line_end]) else {
                return Err(AmiError::MalformedLine { line });
            };
            let colon = start + colon;
            let mut key_start = start;
            let mut key_end = colon;
            while key_start < key_end && bytes[key_start].is_ascii_whitespace() {
                key_start += 1;
            }
            while key_end > key_start && bytes[key_end - 1].is_ascii_whitespace() {
                key_end -= 1;
            }
            let mut value_start = colon + 1;
            if value_start < line_end && bytes[value_start] == b' ' {
                value_start += 1;
            }
            // Spans fit in u32: a message is at most MAX_MESSAGE_LEN bytes.
            fields.push((
                key_start as u32..key_end as u32,
                value_start as u32..line_end as u32,
            ));
        }
        start = end + 1;
    }
    if fields.is_empty() {
        return Err(AmiError::MalformedLine { line: 1 });
    }
    Ok(AmiMessage { text, fields })
}

/// The legacy `Response: Follows` message: headers, then raw CLI text kept as
/// `Output` fields.
fn parse_follows(body: &[u8]) -> Result<AmiMessage, AmiError> {
    let text = String::from_utf8_lossy(body);
    let mut message = AmiMessage {
        text: String::with_capacity(text.len()),
        fields: Vec::with_capacity(16),
    };
    let mut in_output = false;
    for (index, raw_line) in text.split('\n').enumerate() {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.is_empty() && !in_output {
            continue;
        }
        if in_output {
            // Raw CLI text of `Response: Follows`, kept as `Output` fields.
            let line = line.strip_suffix("--END COMMAND--").unwrap_or(line);
            if !line.is_empty() || !raw_line.is_empty() {
                message.push("Output", line);
            }
            continue;
        }
        match line.split_once(':') {
            Some((key, value)) => {
                let value = value.strip_prefix(' ').unwrap_or(value);
                message.push(key.trim(), value);
            }
            None if index > 0 => {
                in_output = true;
                let line = line.strip_suffix("--END COMMAND--").unwrap_or(line);
                if !line.is_empty() {
                    message.push("Output", line);
                }
            }
            None => return Err(AmiError::MalformedLine { line: index + 1 }),
        }
    }
    if message.is_empty() {
        return Err(AmiError::MalformedLine { line: 1 });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framer: &mut AmiFramer, buf: &mut BytesMut) -> Vec<Result<AmiMessage, AmiError>> {
        let mut out = Vec::new();
        loop {
            match framer.decode(buf) {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e)),
            }
        }
    }

    const STREAM: &str = "Asterisk Call Manager/7.0.3\r\n\
Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n\
Event: Newexten\r\nPrivilege: dialplan,all\r\nAppData: Hit dialplan for 9898 @ okon: x\r\nAccountCode:\r\n\r\n\
Event: Newchannel\r\nChannel: PJSIP/201-00000012\r\nChanVariable: realm=a\r\nChanVariable: SIPCALLID=b:c\r\nUniqueid: 1.1\r\n\r\n";

    fn summary(messages: &[Result<AmiMessage, AmiError>]) -> Vec<String> {
        messages
            .iter()
            .map(|m| match m {
                Ok(m) => m
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("|"),
                Err(e) => format!("error: {e}"),
            })
            .collect()
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        let mut framer = AmiFramer::new();
        let mut whole = BytesMut::from(STREAM);
        let expected = summary(&decode_all(&mut framer, &mut whole));
        assert_eq!(expected.len(), 3);
        assert_eq!(framer.banner_version(), Some("7.0.3"));
        for split in 0..STREAM.len() {
            let mut framer = AmiFramer::new();
            let mut buf = BytesMut::from(&STREAM.as_bytes()[..split]);
            let mut got = decode_all(&mut framer, &mut buf);
            buf.extend_from_slice(&STREAM.as_bytes()[split..]);
            got.extend(decode_all(&mut framer, &mut buf));
            assert_eq!(summary(&got), expected, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn byte_by_byte_lf_only_input() {
        let lf = STREAM.replace("\r\n", "\n");
        let mut framer = AmiFramer::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in lf.as_bytes() {
            buf.extend_from_slice(&[*byte]);
            got.extend(decode_all(&mut framer, &mut buf));
        }
        let got = summary(&got);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[2],
            "Event=Newchannel|Channel=PJSIP/201-00000012|ChanVariable=realm=a|ChanVariable=SIPCALLID=b:c|Uniqueid=1.1"
        );
    }

    #[test]
    fn repeated_keys_values_with_colons_and_case_insensitive_lookup() {
        let mut framer = AmiFramer::new();
        let mut buf = BytesMut::from(STREAM);
        let messages: Vec<AmiMessage> = decode_all(&mut framer, &mut buf)
            .into_iter()
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(messages[0].action_id(), Some("1"));
        assert_eq!(messages[0].get("actionid"), Some("1"));
        assert_eq!(
            messages[1].get("AppData"),
            Some("Hit dialplan for 9898 @ okon: x")
        );
        assert_eq!(messages[1].get("AccountCode"), Some(""));
        let vars: Vec<&str> = messages[2].get_all("chanvariable").collect();
        assert_eq!(vars, ["realm=a", "SIPCALLID=b:c"]);
        assert_eq!(messages[2].get("UNIQUEID"), Some("1.1"));
    }

    #[test]
    fn legacy_follows_output_with_blank_lines() {
        let input = "Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n\
Asterisk 11.25.3 built by root\r\n\r\nsecond line: with colon\r\n--END COMMAND--\r\n\r\n\
Response: Success\r\nActionID: 8\r\n\r\n";
        for split in 0..input.len() {
            let mut framer = AmiFramer::new();
            let mut buf = BytesMut::from(&input.as_bytes()[..split]);
            let mut got = decode_all(&mut framer, &mut buf);
            buf.extend_from_slice(&input.as_bytes()[split..]);
            got.extend(decode_all(&mut framer, &mut buf));
            let got: Vec<AmiMessage> = got.into_iter().map(|m| m.unwrap()).collect();
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0].action_id(), Some("7"));
            let output: Vec<&str> = got[0].get_all("Output").collect();
            assert_eq!(
                output,
                [
                    "Asterisk 11.25.3 built by root",
                    "",
                    "second line: with colon"
                ],
                "split at {split}"
            );
            assert_eq!(got[1].action_id(), Some("8"));
        }
    }

    #[test]
    fn oversize_message_is_an_error_then_decoding_resumes() {
        let mut framer = AmiFramer::new();
        let mut buf = BytesMut::new();
        let chunk = "Event: VarSet\r\nValue: ".to_string() + &"x".repeat(64 * 1024) + "\r\n";
        let mut errors = 0;
        for _ in 0..40 {
            buf.extend_from_slice(chunk.as_bytes());
            for result in decode_all(&mut framer, &mut buf) {
                assert!(result.is_err());
                errors += 1;
            }
            assert!(
                buf.len() <= MAX_MESSAGE_LEN + chunk.len(),
                "buffer stays bounded"
            );
        }
        assert_eq!(errors, 1);
        buf.extend_from_slice(b"\r\nEvent: Hangup\r\nUniqueid: 9\r\n\r\n");
        let got = decode_all(&mut framer, &mut buf);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().get("Uniqueid"), Some("9"));
    }

    #[test]
    fn garbage_is_skipped_to_the_next_message() {
        let mut framer = AmiFramer::new();
        let mut buf = BytesMut::from(
            &b"\xff\xfe garbage without colon\r\nmore\r\n\r\nEvent: Hangup\r\nCallerIDName: Jos\xe9\r\n\r\n"[..],
        );
        let got = decode_all(&mut framer, &mut buf);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Err(AmiError::MalformedLine { line: 1 }));
        let hangup = got[1].as_ref().unwrap();
        assert_eq!(hangup.event(), Some("Hangup"));
        assert_eq!(hangup.get("CallerIDName"), Some("Jos\u{fffd}"));
    }

    #[test]
    fn many_messages_in_one_read() {
        let one = "Event: RTCPSent\r\nChannel: PJSIP/201-00000001\r\n\r\n";
        let mut buf = BytesMut::from(one.repeat(500).as_str());
        let mut framer = AmiFramer::new();
        let got = decode_all(&mut framer, &mut buf);
        assert_eq!(got.len(), 500);
        assert!(got
            .iter()
            .all(|m| m.as_ref().is_ok_and(|m| m.event() == Some("RTCPSent"))));
    }
}
