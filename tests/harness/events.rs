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
            summary(&json!({"type": "answered", "extension": null})),
            "answered -"
        );
        assert_eq!(summary(&json!({"type": "held"})), "held");
    }
}
