//! Ringover's call webhooks (developer.ringover.com, "Webhooks"; the sample
//! payloads of Ringover's own `ringover-webhooks` examples): a JSON body
//! `{"resource":"call","event":"ringing","timestamp":…,"data":{…}}` with the
//! call's `call_id`, `direction` (`inbound`/`outbound`), `from_number`,
//! `to_number` (international digits without `+`), `is_anonymous`, the IVR
//! (`ivr_data.ivr_name`, kept as the queue) and `user` (`user_id`, `email`).
//! The server checks the `X-Ringover-Webhook-Signature` header (a JWT signed
//! HS512 with the webhook's key) before reading.
//!
//! Events: `ringing` (one per agent; the first starts the call), `answered`
//! (a second agent answering takes the call over), `hangup`, `missed` (the
//! caller hung up unanswered: the call ends missed unless a `voicemail` follows
//! within `[cti] voicemail_wait_secs`) and `voicemail`. Other events are ignored.

use super::{CtiError, CtiEvent, CtiRequest};
use serde_json::Value;

/// Reads a Ringover webhook: `None` for an event Fiche does not follow.
pub fn read(body: &Value) -> Result<Option<(CtiEvent, CtiRequest)>, CtiError> {
    let name = body
        .get("event")
        .and_then(Value::as_str)
        .ok_or(CtiError::Missing("event"))?;
    if body.get("resource").and_then(Value::as_str) != Some("call") {
        return Ok(None);
    }
    let event = match name {
        "ringing" => CtiEvent::Ringing,
        "answered" => CtiEvent::Answer,
        "hangup" | "missed" => CtiEvent::HungUpUnanswered,
        "voicemail" => CtiEvent::VoicemailLeft,
        _ => return Ok(None),
    };
    let data = body.get("data").ok_or(CtiError::Missing("data"))?;
    let mut request = CtiRequest {
        call_id: data
            .get("call_id")
            .and_then(text)
            .or_else(|| data.get("id").and_then(text)),
        from: data.get("from_number").and_then(text),
        to: data.get("to_number").and_then(text),
        queue: data
            .get("ivr_data")
            .and_then(|i| i.get("ivr_name"))
            .and_then(text),
        ..CtiRequest::default()
    };
    match data.get("direction").and_then(Value::as_str) {
        Some("inbound") => request.direction = Some("in".to_owned()),
        Some("outbound") => request.direction = Some("out".to_owned()),
        Some(other) => return Err(CtiError::BadDirection(other.to_owned())),
        None => {}
    }
    if data.get("is_anonymous").and_then(Value::as_bool) == Some(true) {
        let side = if request.direction.as_deref() == Some("out") {
            &mut request.to
        } else {
            &mut request.from
        };
        *side = Some("anonymous".to_owned());
    }
    if let Some(user) = data.get("user").filter(|u| u.is_object()) {
        request.user_ids = ["user_id", "email"]
            .into_iter()
            .filter_map(|k| user.get(k).and_then(text))
            .filter(|v| !v.is_empty())
            .collect();
    }
    if name == "missed" {
        request.cause = Some(
            data.get("reason")
                .and_then(text)
                .unwrap_or_else(|| "cancel".to_owned()),
        );
    }
    Ok(Some((event, request)))
}

/// A string, or a number as text (Ringover's call ids are numbers).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ringover_calls_read_into_requests() {
        let ringing = json!({
            "event": "ringing", "resource": "call", "timestamp": 1_554_823_493.762_305,
            "data": {
                "id": "57622f20-a020-4f9e-814c-62a6123412fa", "call_id": 1_234_567_890_987_654_400_u64,
                "direction": "inbound", "from_number": "33601020304", "to_number": "33101020304",
                "is_anonymous": false, "ivr_data": {"ivr_name": "myIVR"},
                "user": {"user_id": 123_456_789, "email": "jean.dupont@example.com"}
            }
        });
        let (event, request) = read(&ringing).unwrap().unwrap();
        assert_eq!(event, CtiEvent::Ringing);
        assert_eq!(request.call_id.as_deref(), Some("1234567890987654400"));
        assert_eq!(request.from.as_deref(), Some("33601020304"));
        assert_eq!(request.queue.as_deref(), Some("myIVR"));
        assert_eq!(request.user_ids, ["123456789", "jean.dupont@example.com"]);

        let missed = json!({"event": "missed", "resource": "call",
            "data": {"call_id": 7, "direction": "inbound", "from_number": "x", "to_number": "y",
                     "is_anonymous": true, "reason": "OUT_PLANNING"}});
        let (event, request) = read(&missed).unwrap().unwrap();
        assert_eq!(event, CtiEvent::HungUpUnanswered);
        assert_eq!(request.cause.as_deref(), Some("OUT_PLANNING"));
        assert_eq!(request.from.as_deref(), Some("anonymous"));

        let tags =
            json!({"event": "tags_updated", "resource": "aftercall", "data": {"call_id": 7}});
        assert_eq!(read(&tags).unwrap(), None);
    }
}
