//! Webhook bodies: Fiche's JSON envelope, and Zammad "Generic CTI" form requests.
//! The JSON schema is documented in docs/webhooks.md.

use fiche_hub::TicketSummary;
use fiche_pbx::{CallEvent, CallEventKind, CallId, Direction, Outcome};
use serde_json::json;
use std::collections::HashMap;

/// Version of the JSON envelope; bumped on incompatible changes.
pub const SCHEMA: &str = "fiche.webhook.v1";
/// Event type of a ticket change (created, updated, closed: `status` tells).
pub const TICKET_CHANGED: &str = "ticket_changed";
/// Most calls the Zammad target remembers the parties of.
const MAX_ZAMMAD_CALLS: usize = 50_000;

/// `(event type, body)` of the JSON target: `{"schema","kind":"call_event","event":{…}}`.
pub fn json(event: &CallEvent) -> Option<(String, String)> {
    let body = json!({ "schema": SCHEMA, "kind": "call_event", "event": event });
    Some((event.kind.name().to_owned(), body.to_string()))
}

/// `(event type, body)` of a ticket change for the JSON target:
/// `{"schema","kind":"ticket_changed","ticket":{…}}`.
pub fn ticket_json(ticket: &TicketSummary) -> (String, String) {
    let body = json!({ "schema": SCHEMA, "kind": TICKET_CHANGED, "ticket": ticket });
    (TICKET_CHANGED.to_owned(), body.to_string())
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
    /// `None`: an internal call, which Zammad does not get.
    calls: HashMap<CallId, Option<Parties>>,
    ended: Vec<CallId>,
}

impl ZammadCalls {
    /// Whether `event` is an answer or hangup of a call this process never saw
    /// start (Fiche restarted meanwhile): its parties must be [`remember`]ed
    /// before [`form`] can write it.
    ///
    /// [`remember`]: Self::remember
    /// [`form`]: Self::form
    pub fn needs_parties(&self, event: &CallEvent) -> bool {
        matches!(
            event.kind,
            CallEventKind::Answered { .. } | CallEventKind::Ended { .. }
        ) && !self.calls.contains_key(&event.call_id)
    }

    /// Remembers the parties of a call started before a restart, as the call
    /// log has them (`from`: `None` when withheld).
    pub fn remember(
        &mut self,
        call_id: CallId,
        direction: Direction,
        from: Option<String>,
        to: Option<String>,
    ) {
        if self.calls.len() >= MAX_ZAMMAD_CALLS {
            return;
        }
        let parties = zammad_direction(direction).map(|direction| Parties {
            from: from.unwrap_or_else(|| "anonymous".to_owned()),
            to: to.unwrap_or_default(),
            direction,
        });
        self.calls.insert(call_id, parties);
    }

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
                self.remember(
                    event.call_id,
                    *direction,
                    caller.number.clone(),
                    callee.number.clone(),
                );
                ("newCall", Vec::new())
            }
            CallEventKind::Answered { extension } => (
                "answer",
                extension
                    .iter()
                    .map(|e| ("answeringNumber", e.to_string()))
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
        let parties = self.calls.get(&event.call_id)?.as_ref()?;
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

/// Zammad's `direction`; `None` for internal calls, which it does not know.
fn zammad_direction(direction: Direction) -> Option<&'static str> {
    match direction {
        Direction::Inbound => Some("in"),
        Direction::Outbound => Some("out"),
        Direction::Internal => None,
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
        Outcome::Voicemail => "voicemail",
        Outcome::Forwarded => "forwarded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fiche_pbx::{Extension, Party, Source};

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
            queue: None,
        });
        let (name, body) = calls.form(&started).unwrap();
        assert_eq!(name, "newCall");
        assert!(
            body.starts_with("event=newCall&from=%2B33612345678&to=201&direction=in&callId="),
            "{body}"
        );
        assert!(calls
            .form(&event(CallEventKind::Ringing {
                extension: Extension::new("201").unwrap()
            }))
            .is_none());
        let (_, body) = calls
            .form(&event(CallEventKind::Answered {
                extension: Extension::new("201"),
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
    fn zammad_gets_the_hangup_of_a_call_started_before_a_restart() {
        let mut calls = ZammadCalls::default();
        let hangup = event(CallEventKind::Ended {
            outcome: Outcome::Missed,
            cause: "cancel".into(),
        });
        assert!(calls.needs_parties(&hangup));
        assert!(calls.form(&hangup).is_none(), "no parties, nothing to send");
        calls.remember(hangup.call_id, Direction::Inbound, None, Some("201".into()));
        assert!(!calls.needs_parties(&hangup));
        let (name, body) = calls.form(&hangup).unwrap();
        assert_eq!(name, "hangup");
        assert!(
            body.starts_with("event=hangup&from=anonymous&to=201&direction=in&callId="),
            "{body}"
        );
    }

    #[test]
    fn zammad_skips_internal_calls_without_asking_again() {
        let mut calls = ZammadCalls::default();
        let started = event(CallEventKind::CallStarted {
            source_key: "z".into(),
            direction: Direction::Internal,
            caller: Party {
                number: Some("201".into()),
                ..Party::default()
            },
            callee: Party {
                number: Some("202".into()),
                ..Party::default()
            },
            diverted_from: Vec::new(),
            queue: None,
        });
        assert!(calls.form(&started).is_none());
        let answered = event(CallEventKind::Answered {
            extension: Extension::new("202"),
        });
        assert!(!calls.needs_parties(&answered), "known as internal");
        assert!(calls.form(&answered).is_none());
    }

    #[test]
    fn ticket_changes_have_their_own_envelope() {
        let ticket = TicketSummary {
            id: 7,
            kind: fiche_hub::TicketKind::Callback,
            status: fiche_hub::TicketStatus::Open,
            priority: fiche_hub::Priority::Normal,
            subject: "À rappeler : <b>Dupont</b>".into(),
            customer_id: Some(3),
            customer_name: Some("Dupont".into()),
            assignee_user_id: None,
            call_id: Some(CallId::from_source_key(Source::Cti, "pbx/1")),
            due_at: None,
            attempts: 2,
            updated_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            created: true,
        };
        let (name, body) = ticket_json(&ticket);
        assert_eq!(name, "ticket_changed");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["schema"], SCHEMA);
        assert_eq!(value["kind"], "ticket_changed");
        assert_eq!(value["ticket"]["id"], 7);
        assert_eq!(value["ticket"]["kind"], "callback");
        assert_eq!(value["ticket"]["status"], "open");
        assert_eq!(value["ticket"]["subject"], "À rappeler : <b>Dupont</b>");
        assert_eq!(value["ticket"]["attempts"], 2);
        assert_eq!(value["ticket"]["created"], true);
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
