//! Aircall's call webhooks (developer.aircall.io, "Webhooks" and the Call
//! object): a JSON body `{"resource":"call","event":"call.created",
//! "timestamp":…,"token":…,"data":{call}}`. The call's `id`, `direction`
//! (`inbound`/`outbound`), `raw_digits` (the outside number), `number` (the
//! Aircall line: `digits`, and `name`, kept as the queue), `user` (the agent:
//! `id`, `email`), `transferred_to`/`transferred_by`, `missed_call_reason` and
//! `voicemail` are read. Aircall signs nothing: the body's `token` is the
//! webhook's token, checked by the server against the configured one.
//!
//! Events: `call.created` starts the call, `call.ringing_on_agent` rings an
//! agent, `call.agent_declined` stops her ringing, `call.answered` answers,
//! `call.transferred` sends the call on, `call.hungup` ends an answered call
//! at once and an unanswered one once `call.ended` (about 30 s later, with
//! `missed_call_reason` and `voicemail`) or `call.voicemail_left` says whether
//! a message was left. Other events (tags, comments, assignment…) are ignored.

use super::{CtiError, CtiEvent, CtiRequest};
use serde_json::Value;

/// The `token` field every Aircall webhook carries.
pub fn token(body: &Value) -> Option<&str> {
    body.get("token").and_then(Value::as_str)
}

/// Reads an Aircall webhook: `None` for an event Fiche does not follow.
pub fn read(body: &Value) -> Result<Option<(CtiEvent, CtiRequest)>, CtiError> {
    let name = body
        .get("event")
        .and_then(Value::as_str)
        .ok_or(CtiError::Missing("event"))?;
    if body.get("resource").and_then(Value::as_str) != Some("call") {
        return Ok(None);
    }
    let event = match name {
        "call.created" => CtiEvent::NewCall,
        "call.ringing_on_agent" => CtiEvent::Ringing,
        "call.agent_declined" => CtiEvent::Declined,
        "call.answered" => CtiEvent::Answer,
        "call.transferred" => CtiEvent::Transfer,
        "call.hungup" => CtiEvent::HungUpUnanswered,
        "call.ended" => CtiEvent::Hangup,
        "call.voicemail_left" => CtiEvent::VoicemailLeft,
        _ => return Ok(None),
    };
    let data = body.get("data").ok_or(CtiError::Missing("data"))?;
    let mut request = CtiRequest {
        call_id: data.get("id").and_then(text),
        ..CtiRequest::default()
    };
    let outside = data
        .get("raw_digits")
        .and_then(text)
        .filter(|d| !d.trim().is_empty());
    let line = data
        .get("number")
        .and_then(|n| n.get("digits"))
        .and_then(text);
    request.queue = data
        .get("number")
        .and_then(|n| n.get("name"))
        .and_then(text);
    match data.get("direction").and_then(Value::as_str) {
        Some("inbound") => {
            request.direction = Some("in".to_owned());
            request.from = outside;
            request.to = line;
        }
        Some("outbound") => {
            request.direction = Some("out".to_owned());
            request.from = line;
            request.to = outside;
        }
        Some(other) => return Err(CtiError::BadDirection(other.to_owned())),
        None => {}
    }
    if event == CtiEvent::Transfer {
        if let Some(target) = data.get("transferred_to") {
            request.user_ids = ids(target);
            request.answering_number = ["digits", "phone_number", "number"]
                .into_iter()
                .find_map(|k| target.get(k).and_then(text));
        }
        if let Some(by) = data.get("transferred_by") {
            request.transferred_by = ids(by);
        }
    } else if let Some(user) = data.get("user") {
        request.user_ids = ids(user);
    }
    if event == CtiEvent::Hangup {
        let voicemail = data.get("voicemail").is_some_and(|v| !v.is_null());
        request.cause = if voicemail {
            Some("voicemail".to_owned())
        } else {
            data.get("missed_call_reason").and_then(text)
        };
    }
    if event == CtiEvent::HungUpUnanswered {
        request.cause = data.get("missed_call_reason").and_then(text);
    }
    Ok(Some((event, request)))
}

/// An agent's ids: `id` and `email`.
fn ids(user: &Value) -> Vec<String> {
    ["id", "email"]
        .into_iter()
        .filter_map(|k| user.get(k).and_then(text))
        .filter(|v| !v.is_empty())
        .collect()
}

/// A string, or a number as text (Aircall's ids are numbers).
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

    fn call(event: &str, data: Value) -> Value {
        json!({"resource": "call", "event": event, "timestamp": 1_537_525_832, "token": "t", "data": data})
    }

    #[test]
    fn aircall_calls_read_into_requests() {
        let inbound = json!({
            "id": 76259012, "direction": "inbound", "raw_digits": "+33 6 12 34 56 78",
            "number": {"digits": "+33 4 22 20 20 20", "name": "Support"},
            "user": {"id": 216119, "email": "claire@example.com"},
            "voicemail": null, "missed_call_reason": null
        });
        let (event, request) = read(&call("call.ringing_on_agent", inbound.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(event, CtiEvent::Ringing);
        assert_eq!(request.call_id.as_deref(), Some("76259012"));
        assert_eq!(request.direction.as_deref(), Some("in"));
        assert_eq!(request.from.as_deref(), Some("+33 6 12 34 56 78"));
        assert_eq!(request.queue.as_deref(), Some("Support"));
        assert_eq!(request.user_ids, ["216119", "claire@example.com"]);

        let mut ended = inbound.clone();
        ended["voicemail"] = json!("https://example.com/v.mp3");
        let (event, request) = read(&call("call.ended", ended)).unwrap().unwrap();
        assert_eq!(event, CtiEvent::Hangup);
        assert_eq!(request.cause.as_deref(), Some("voicemail"));

        let mut missed = inbound;
        missed["missed_call_reason"] = json!("agents_did_not_answer");
        let (_, request) = read(&call("call.ended", missed)).unwrap().unwrap();
        assert_eq!(request.cause.as_deref(), Some("agents_did_not_answer"));

        let transfer = json!({"id": 1, "direction": "inbound",
            "transferred_by": {"id": 1, "email": "a@example.com"},
            "transferred_to": {"id": 2, "email": "b@example.com"}});
        let (_, request) = read(&call("call.transferred", transfer)).unwrap().unwrap();
        assert_eq!(request.user_ids, ["2", "b@example.com"]);
        assert_eq!(request.transferred_by, ["1", "a@example.com"]);

        assert_eq!(read(&call("call.tagged", json!({"id": 1}))).unwrap(), None);
        assert_eq!(
            read(&json!({"resource": "user", "event": "user.opened", "data": {}})).unwrap(),
            None
        );
        assert_eq!(read(&json!({"data": {}})), Err(CtiError::Missing("event")));
    }
}
