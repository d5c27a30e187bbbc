//! Call events as short comparable lines (`"ringing 201"`, `"ended missed"`),
//! so a test states a whole call flow in one `assert_eq!`.

use serde_json::Value;

/// One event as a line: its `type` and the fields that identify it.
pub fn summary(event: &Value) -> String {
    let text = |key: &str| match &event[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    match event["type"].as_str() {
        Some("call_started") => format!("call_started {}", text("direction")),
        Some("ringing") => format!("ringing {}", text("extension")),
        Some("ringing_stopped") => {
            format!("ringing_stopped {} ({})", text("extension"), text("cause"))
        }
        Some("answered") => format!("answered {}", text("extension")),
        Some("transferred") => format!("transferred {} {}", text("to"), text("kind")),
        Some("ended") => format!("ended {}", text("outcome")),
        Some(other) => other.to_owned(),
        None => format!("not a call event: {event}"),
    }
}

/// The lines of a call's events, in order, except that a run of consecutive
/// `ringing_stopped` lines is sorted: the phones a ring group stops at once
/// have no meaningful order.
pub fn summaries(events: &[Value]) -> Vec<String> {
    let mut lines: Vec<String> = events.iter().map(summary).collect();
    let mut start = 0;
    while start < lines.len() {
        let mut end = start;
        while end < lines.len() && lines[end].starts_with("ringing_stopped ") {
            end += 1;
        }
        if end > start {
            lines[start..end].sort();
            start = end;
        } else {
            start += 1;
        }
    }
    lines
}

/// The events of the call whose `call_started` names `source_key` (the SIP
/// Call-ID); empty when no such call started.
pub fn of_call<'a>(events: &'a [Value], source_key: &str) -> Vec<&'a Value> {
    let call_id = events
        .iter()
        .find(|e| e["type"] == "call_started" && e["source_key"] == source_key)
        .map(|e| e["call_id"].clone());
    match call_id {
        Some(id) => events.iter().filter(|e| e["call_id"] == id).collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ring_group_stops_compare_in_any_order() {
        let a = [
            json!({"type": "answered", "extension": "202"}),
            json!({"type": "ringing_stopped", "extension": "203", "cause": "answered elsewhere"}),
            json!({"type": "ringing_stopped", "extension": "201", "cause": "answered elsewhere"}),
            json!({"type": "ended", "outcome": "answered", "cause": "BYE"}),
        ];
        assert_eq!(
            summaries(&a),
            [
                "answered 202",
                "ringing_stopped 201 (answered elsewhere)",
                "ringing_stopped 203 (answered elsewhere)",
                "ended answered",
            ]
        );
    }

    #[test]
    fn outbound_answer_has_no_extension() {
        assert_eq!(
            summary(&json!({"type": "answered", "extension": null})),
            "answered -"
        );
        assert_eq!(summary(&json!({"type": "held"})), "held");
    }
}
