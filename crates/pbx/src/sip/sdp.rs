//! Media direction of an SDP offer: does it put the call on hold?
//!
//! RFC 3264 §8.4 and RFC 6337 §5.3: a hold offer has `a=sendonly` or
//! `a=inactive`, session-level or per media line (media level wins); RFC 2543
//! era phones instead send `c=IN IP4 0.0.0.0`. Only the first audio stream is
//! judged (or the first stream when there is no audio), since hold is about voice.

/// Direction attribute of a session or media section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaDirection {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

#[derive(Debug, Clone, Copy, Default)]
struct Section {
    direction: Option<MediaDirection>,
    /// `c=` line seen: `Some(true)` when it is the 0.0.0.0 hold address.
    null_connection: Option<bool>,
    /// Media port 0: the stream is disabled.
    disabled: bool,
}

/// `Some(true)` when the SDP offer in `body` puts the call on hold, `Some(false)`
/// when it offers active media, `None` when `body` is not SDP.
pub(crate) fn offer_is_hold(body: &[u8]) -> Option<bool> {
    let mut seen_version = false;
    let mut session = Section::default();
    let mut current: Option<(bool, Section)> = None;
    let mut first_audio: Option<Section> = None;
    let mut first_any: Option<Section> = None;

    let mut finish = |media: Option<(bool, Section)>| {
        if let Some((is_audio, section)) = media {
            if section.disabled {
                return;
            }
            if is_audio && first_audio.is_none() {
                first_audio = Some(section);
            }
            if first_any.is_none() {
                first_any = Some(section);
            }
        }
    };

    for raw in body.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Some((&kind, rest)) = line.split_first() else {
            continue;
        };
        let Some(value) = rest.strip_prefix(b"=") else {
            continue;
        };
        match kind {
            b'v' => seen_version = true,
            b'm' => {
                finish(current.take());
                let mut fields = value.split(|&b| b == b' ');
                let media = fields.next().unwrap_or_default();
                let port = fields.next().unwrap_or_default();
                current = Some((
                    media == b"audio",
                    Section {
                        disabled: port == b"0",
                        ..Section::default()
                    },
                ));
            }
            b'a' | b'c' => {
                let section = match current.as_mut() {
                    Some((_, s)) => s,
                    None => &mut session,
                };
                if kind == b'c' {
                    let address = value.rsplit(|&b| b == b' ').next().unwrap_or_default();
                    let address = address.split(|&b| b == b'/').next().unwrap_or_default();
                    section.null_connection = Some(address == b"0.0.0.0");
                } else {
                    let direction = match value {
                        b"sendrecv" => Some(MediaDirection::SendRecv),
                        b"sendonly" => Some(MediaDirection::SendOnly),
                        b"recvonly" => Some(MediaDirection::RecvOnly),
                        b"inactive" => Some(MediaDirection::Inactive),
                        _ => None,
                    };
                    if direction.is_some() {
                        section.direction = direction;
                    }
                }
            }
            _ => {}
        }
    }
    finish(current.take());
    if !seen_version {
        return None;
    }
    let media = first_audio.or(first_any).unwrap_or_default();
    let direction = media
        .direction
        .or(session.direction)
        .unwrap_or(MediaDirection::SendRecv);
    let null_connection = media
        .null_connection
        .or(session.null_connection)
        .unwrap_or(false);
    Some(
        matches!(
            direction,
            MediaDirection::SendOnly | MediaDirection::Inactive
        ) || null_connection,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(session_attr: &str, connection: &str, media_attr: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\n{session_attr}m=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n{media_attr}"
        )
    }

    #[test]
    fn sendonly_and_inactive_are_hold() {
        assert_eq!(
            offer_is_hold(sdp("", "127.0.0.1", "a=sendonly\r\n").as_bytes()),
            Some(true)
        );
        assert_eq!(
            offer_is_hold(sdp("a=inactive\r\n", "127.0.0.1", "").as_bytes()),
            Some(true)
        );
        assert_eq!(offer_is_hold(sdp("", "0.0.0.0", "").as_bytes()), Some(true));
    }

    #[test]
    fn media_level_wins_over_session_level() {
        let s = sdp("a=sendonly\r\n", "127.0.0.1", "a=sendrecv\r\n");
        assert_eq!(offer_is_hold(s.as_bytes()), Some(false));
        let s = sdp("a=sendrecv\r\n", "127.0.0.1", "a=sendonly\r\n");
        assert_eq!(offer_is_hold(s.as_bytes()), Some(true));
    }

    #[test]
    fn plain_offer_is_not_hold_and_other_bodies_are_not_sdp() {
        assert_eq!(
            offer_is_hold(sdp("", "127.0.0.1", "").as_bytes()),
            Some(false)
        );
        assert_eq!(
            offer_is_hold(b"v=0\nm=audio 6000 RTP/AVP 0\na=recvonly\n"),
            Some(false)
        );
        assert_eq!(offer_is_hold(b"SIP/2.0 200 OK"), None);
        assert_eq!(offer_is_hold(b""), None);
    }
}
