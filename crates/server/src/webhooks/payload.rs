//! Webhook bodies: Fiche's JSON envelope, and Zammad "Generic CTI" form requests.
//! The JSON schema is documented in docs/webhooks.md.

use fiche_pbx::{CallEvent, CallEventKind, CallId, Direction, Outcome};
use serde_json::json;
use std::collections::HashMap;

/// Version of the JSON envelope; bumped on incompatible changes.
pub const SCHEMA: &str = "fiche.webhook.v1";
/// Most calls the Zammad target remembers the parties of.
const MAX_ZAMMAD_CALLS: usize = 50_000;

/// `(event type, body)` of the JSON target: `{"schema","kind":"call_event","event":{…}}`.
pub fn json(event: &CallEvent) -> Option<(String, String)> {
    let body = json!({ "schema": SCHEMA, "kind": "call_event", "event": event });
    Some((event.kind.name().to_owned(), body.to_string()))
}

#[derive(Debug, Clone)]
struct Parties {
    from: String,
    to: String,
    direction: &'static str,
}

/// What the Zammad target must remember between a call's events: Zammad wants
/// `from`, `to` and `direction` on every request.
#[derive(Debug, Default)]
pub struct ZammadCalls {
    calls: HashMap<CallId, Parties>,
    ended: Vec<CallId>,
}

impl ZammadCalls {
    /// `(event, form body)` for events Zammad knows (newCall, answer, hangup);
    /// `None` for the others and for internal calls (Zammad only knows in/out).
    pub fn form(&mut self, event: &CallEvent) -> Option<(String, String)> {
        let call_id = event.call_id.to_string();
        let (name, extra): (&str, Vec<(&str, String)>) = match &event.kind {
            CallEventKind::CallStarted {
                direction,
                caller,
                callee,
                ..
            } => {
                let direction = match direction {
                    Direction::Inbound => "in",
                    Direction::Outbound => "out",
                    Direction::Internal => return None,
                };
                if self.calls.len() >= MAX_ZAMMAD_CALLS {
                    return None;
                }
                let parties = Parties {
                    from: caller
                        .number
                        .clone()
                        .unwrap_or_else(|| "anonymous".to_owned()),
                    to: callee.number.clone().unwrap_or_default(),
                    direction,
                };
                self.calls.insert(event.call_id, parties);
                ("newCall", Vec::new())
            }
            CallEventKind::Answered { extension } => (
                "answer",
                extension
                    .iter()
                    .map(|e| ("answeringNumber", e.clone()))
                    .collect(),
            ),
            CallEventKind::Ended { outcome, cause } => {
                self.ended.push(event.call_id);
                (
                    "hangup",
                    vec![("cause", zammad_cause(*outcome, cause).to_owned())],
                )
            }
            _ => return None,
        };
        let parties = self.calls.get(&event.call_id)?;
        let mut fields = vec![
            ("event", name.to_owned()),
            ("from", parties.from.clone()),
            ("to", parties.to.clone()),
            ("direction", parties.direction.to_owned()),
            ("callId", call_id),
        ];
        fields.extend(extra);
        let body = serde_urlencoded::to_string(&fields).ok()?;
        Some((name.to_owned(), body))
    }

    /// Forgets the calls that ended (their hangup is already written).
    pub fn forget_ended(&mut self) {
        for id in self.ended.drain(..) {
            self.calls.remove(&id);
        }
    }
}

/// Zammad's hangup cause for an outcome; a Zammad cause word received from a
/// CTI source is passed on as is.
fn zammad_cause(outcome: Outcome, cause: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "normalClearing",
        "busy",
        "cancel",
        "noAnswer",
        "congestion",
        "notFound",
        "forwarded",
        "voicemail",
        "blocked",
    ];
    if let Some(known) = KNOWN.iter().find(|k| **k == cause) {
        return known;
    }
    match outcome {
        Outcome::Answered => "normalClearing",
        Outcome::Missed => "cancel",
        Outcome::Busy | Outcome::Rejected => "busy",
        Outcome::Failed => "congestion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fiche_pbx::{Party, Source};

    fn event(kind: CallEventKind) -> CallEvent {
        CallEvent {
            call_id: CallId::from_source_key(Source::Hep, "z"),
            source: Source::Hep,
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            kind,
        }
    }

    #[test]
    fn zammad_gets_new_call_answer_hangup_with_parties_each_time() {
        let mut calls = ZammadCalls::default();
        let started = event(CallEventKind::CallStarted {
            source_key: "z".into(),
            direction: Direction::Inbound,
            caller: Party {
                number: Some("+33612345678".into()),
                ..Party::default()
            },
            callee: Party {
                number: Some("201".into()),
                ..Party::default()
            },
            diverted_from: Vec::new(),
        });
        let (name, body) = calls.form(&started).unwrap();
        assert_eq!(name, "newCall");
        assert!(
            body.starts_with("event=newCall&from=%2B33612345678&to=201&direction=in&callId="),
            "{body}"
        );
        assert!(calls
            .form(&event(CallEventKind::Ringing {
                extension: "201".into()
            }))
            .is_none());
        let (_, body) = calls
            .form(&event(CallEventKind::Answered {
                extension: Some("201".into()),
            }))
            .unwrap();
        assert!(
            body.contains("event=answer&from=%2B33612345678")
                && body.ends_with("answeringNumber=201"),
            "{body}"
        );
        let (_, body) = calls
            .form(&event(CallEventKind::Ended {
                outcome: Outcome::Missed,
                cause: "487 Request Terminated".into(),
            }))
            .unwrap();
        assert!(body.ends_with("cause=cancel"), "{body}");
        calls.forget_ended();
        assert!(calls.calls.is_empty());
    }

    #[test]
    fn json_envelope_carries_the_event() {
        let (name, body) = json(&event(CallEventKind::Held)).unwrap();
        assert_eq!(name, "held");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["schema"], SCHEMA);
        assert_eq!(value["event"]["type"], "held");
        assert_eq!(value["event"]["source"], "hep");
    }
}
