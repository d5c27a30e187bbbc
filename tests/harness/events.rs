//! The one golden format of call events: a line per event, `#<n> <type>
//! <details>` (`"#1 ringing 201"`, `"#1 ended missed: caller hung up"`), so a
//! test states a whole call flow, whatever its source, in one `assert_eq!`.
//! Events streamed as JSON (`/ws/events`, webhooks) and typed events
//! (`fiche_pbx::CallEvent`, through `serde_json::to_value`) give the same lines.

use serde_json::Value;
use std::collections::HashMap;

/// The lines of `events`, in order. Calls are numbered `#1`, `#2`, … in the
/// order their first event appears, so the lines of one call read `#1 …`
/// whatever its id. A run of consecutive `ringing_stopped` lines is sorted:
/// the phones a ring group stops at once have no meaningful order.
pub fn lines<'a>(events: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut numbers: HashMap<String, usize> = HashMap::new();
    let mut lines: Vec<String> = events
        .into_iter()
        .map(|event| {
            let next = numbers.len() + 1;
            let call = event["call_id"].as_str().unwrap_or_default().to_owned();
            let n = *numbers.entry(call).or_insert(next);
            line(n, event)
        })
        .collect();
    let stopped = |line: &str| line.split(' ').nth(1) == Some("ringing_stopped");
    let mut start = 0;
    while start < lines.len() {
        let mut end = start;
        while end < lines.len() && stopped(&lines[end]) {
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

/// One event of call `#n`: its `type` and the fields that tell what happened.
fn line(n: usize, event: &Value) -> String {
    let Some(kind) = event["type"].as_str() else {
        return format!("not a call event: {event}");
    };
    let text = |key: &str| event[key].as_str().unwrap_or("-").to_owned();
    let details = match kind {
        "call_started" => {
            let mut s = format!(
                "{} caller={} callee={}",
                text("direction"),
                party(&event["caller"]),
                party(&event["callee"])
            );
            if let Some(queue) = event["queue"].as_str() {
                s.push_str(&format!(" queue={queue}"));
            }
            if let Some(diverted) = event["diverted_from"].as_array() {
                let from: Vec<&str> = diverted.iter().filter_map(Value::as_str).collect();
                s.push_str(&format!(" diverted_from={}", from.join(",")));
            }
            s
        }
        "ringing" | "answered" => text("extension"),
        "ringing_stopped" => format!("{}: {}", text("extension"), text("cause")),
        "parties_updated" => format!(
            "caller={} callee={}",
            party(&event["caller"]),
            party(&event["callee"])
        ),
        "transferred" => {
            let mut s = format!("{} {}", text("to"), text("kind"));
            if let Some(by) = event["by"].as_str() {
                s.push_str(&format!(" by {by}"));
            }
            if let Some(transferee) = event["transferee"].as_str() {
                s.push_str(&format!(" sending {transferee}"));
            }
            s
        }
        "ended" => format!("{}: {}", text("outcome"), text("cause")),
        _ => String::new(),
    };
    format!("#{n} {kind} {details}").trim_end().to_owned()
}

/// A caller or callee: its number (`withheld`, `-` when none), then its name
/// in brackets when it has one.
fn party(party: &Value) -> String {
    let mut s = match (&party["number"], party["withheld"].as_bool()) {
        (_, Some(true)) => "withheld".to_owned(),
        (Value::String(n), _) => n.clone(),
        _ => "-".to_owned(),
    };
    if let Value::String(name) = &party["name"] {
        s.push_str(&format!(" ({name})"));
    }
    s
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

/// Seconds since the Unix epoch of an RFC 3339 UTC instant
/// (`2026-11-23T23:25:06.637916671Z` or `…+00:00`); `None` for anything else.
pub fn epoch_seconds(at: &str) -> Option<f64> {
    let body = at.strip_suffix('Z').or_else(|| at.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let mut time_parts = time.splitn(3, ':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let second: f64 = time_parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    #[allow(clippy::cast_precision_loss)] // reason: seconds since 1970 fit f64 exactly enough
    let whole = (days * 86_400 + hour * 3_600 + minute * 60) as f64;
    Some(whole + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ring_group_stops_compare_in_any_order() {
        let a = [
            json!({"call_id": "x", "type": "answered", "extension": "202"}),
            json!({"call_id": "x", "type": "ringing_stopped", "extension": "203", "cause": "answered elsewhere"}),
            json!({"call_id": "x", "type": "ringing_stopped", "extension": "201", "cause": "answered elsewhere"}),
            json!({"call_id": "x", "type": "ended", "outcome": "answered", "cause": "BYE"}),
        ];
        assert_eq!(
            lines(&a),
            [
                "#1 answered 202",
                "#1 ringing_stopped 201: answered elsewhere",
                "#1 ringing_stopped 203: answered elsewhere",
                "#1 ended answered: BYE",
            ]
        );
    }

    #[test]
    fn calls_are_numbered_in_order_of_appearance() {
        let events = [
            json!({"call_id": "b", "type": "call_started", "direction": "inbound",
                   "caller": {"number": "0612345678", "name": "Client Test", "withheld": false},
                   "callee": {"number": "201", "name": null, "withheld": false}}),
            json!({"call_id": "a", "type": "call_started", "direction": "outbound",
                   "caller": {"number": null, "name": null, "withheld": true},
                   "callee": {"number": null, "name": null, "withheld": false},
                   "queue": "support", "diverted_from": ["300", "301"]}),
            json!({"call_id": "b", "type": "transferred", "kind": "blind", "by": "201",
                   "transferee": "0612345678", "to": "202"}),
            json!({"call_id": "a", "type": "held"}),
        ];
        assert_eq!(
            lines(&events),
            [
                "#1 call_started inbound caller=0612345678 (Client Test) callee=201",
                "#2 call_started outbound caller=withheld callee=- queue=support diverted_from=300,301",
                "#1 transferred 202 blind by 201 sending 0612345678",
                "#2 held",
            ]
        );
    }

    #[test]
    fn rfc3339_instants_convert_to_epoch_seconds() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(epoch_seconds("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
        assert_eq!(
            epoch_seconds("2024-02-29T00:00:00.5+00:00"),
            Some(1_709_164_800.5)
        );
        assert_eq!(epoch_seconds("2023-11-14T22:13:20+01:00"), None);
        assert_eq!(epoch_seconds("yesterday"), None);
    }

    #[test]
    fn outbound_answer_has_no_extension() {
        assert_eq!(
            lines(&[json!({"type": "answered", "extension": null})]),
            ["#1 answered -"]
        );
        assert_eq!(
            lines(&[json!("closed by server")]),
            ["not a call event: \"closed by server\""]
        );
    }
}
