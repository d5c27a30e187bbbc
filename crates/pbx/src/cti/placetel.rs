//! Placetel's call notifications, as Zammad's Placetel driver reads them
//! (`app/models/cti/driver/placetel.rb`): `IncomingCall`, `OutgoingCall`,
//! `CallAccepted` and `HungUp` become Zammad's events, the `type` of a
//! `HungUp` its cause (`missed` → `cancel`, `voicemail`, `blocked`,
//! `accepted` → `normalClearing`), and `peer` (the SIP user of the phone)
//! names the agent through the configured agent ids. The answer is XML
//! ([`super::xml::placetel`]).

use super::{CtiError, CtiEvent, CtiRequest};

/// Reads a Placetel request's `name=value` pairs: its event and the request.
pub fn read<I, K, V>(pairs: I) -> Result<(CtiEvent, CtiRequest), CtiError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Into<String>,
{
    let mut kind = None;
    let mut request = CtiRequest::from_pairs(pairs.into_iter().filter_map(|(k, v)| {
        let v: String = v.into();
        if k.as_ref() == "type" {
            kind = Some(v);
            None
        } else {
            Some((k.as_ref().to_owned(), v))
        }
    }));
    let name = request
        .event
        .clone()
        .filter(|e| !e.is_empty())
        .ok_or(CtiError::Missing("event"))?;
    let event = match name.as_str() {
        "IncomingCall" => {
            request.direction = Some("in".to_owned());
            CtiEvent::NewCall
        }
        "OutgoingCall" => {
            request.direction = Some("out".to_owned());
            // The calling phone's SIP user (`777008478072@example.com`) names
            // the agent, as Zammad looks it up.
            if let Some(from) = request.from.clone().filter(|f| f.contains('@')) {
                request.user_ids.push(from);
            }
            CtiEvent::NewCall
        }
        "CallAccepted" => CtiEvent::Answer,
        "HungUp" => CtiEvent::Hangup,
        _ => {
            return Err(CtiError::UnknownEvent(name));
        }
    };
    if let Some(kind) = kind {
        let cause = match kind.as_str() {
            "missed" => "cancel",
            "voicemail" => "voicemail",
            "blocked" => "blocked",
            "accepted" => "normalClearing",
            "busy" => "busy",
            other => other,
        };
        request.cause = Some(cause.to_owned());
    }
    Ok((event, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_form(body: &str) -> Result<(CtiEvent, CtiRequest), CtiError> {
        let pairs: Vec<(String, String)> = body
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        read(pairs)
    }

    #[test]
    fn placetel_events_read_as_zammad_does() {
        let (event, request) =
            read_form("event=IncomingCall&from=01114100300&to=030600000000&call_id=1").unwrap();
        assert_eq!(event, CtiEvent::NewCall);
        assert_eq!(request.direction.as_deref(), Some("in"));
        assert_eq!(request.call_id.as_deref(), Some("1"));

        let (event, request) =
            read_form("event=OutgoingCall&to=099999222222&call_id=2&from=777008478072@example.com")
                .unwrap();
        assert_eq!(event, CtiEvent::NewCall);
        assert_eq!(request.direction.as_deref(), Some("out"));
        assert_eq!(request.user_ids, ["777008478072@example.com"]);

        let (event, request) = read_form("event=CallAccepted&call_id=4&user=voicemail").unwrap();
        assert_eq!(event, CtiEvent::Answer);
        assert_eq!(request.users, ["voicemail"]);

        for (kind, cause) in [
            ("missed", "cancel"),
            ("voicemail", "voicemail"),
            ("blocked", "blocked"),
            ("accepted", "normalClearing"),
        ] {
            let (event, request) =
                read_form(&format!("event=HungUp&call_id=5&type={kind}")).unwrap();
            assert_eq!(event, CtiEvent::Hangup);
            assert_eq!(request.cause.as_deref(), Some(cause), "{kind}");
        }
        assert_eq!(
            read_form("event=Ringing&call_id=6"),
            Err(CtiError::UnknownEvent("Ringing".into()))
        );
        assert_eq!(read_form("call_id=6"), Err(CtiError::Missing("event")));
    }
}
