//! Real AMI recordings (test support, not product code): loads the recorded
//! call flows of `../shared/recordings/ami/` (never copied into this
//! repository) with what a correct tracker reports for each
//! (`expectations.json`), and checks a stream of Fiche call events against it.
//!
//! The directory is `FICHE_AMI_RECORDINGS` when set, so a further set of
//! recordings kept apart from the team replays through the same suites. Every
//! flow that `expectations.json` lists is checked; none is named in code.
//!
//! Recordings come as JSON arrays (one object per AMI message, as cacofonisk
//! records them: keys sorted, an empty `content` key added) or as raw byte
//! streams (`Key: Value\r\n`, a blank line after each message).

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use fiche_pbx::ami::{AmiFramer, AmiMessage};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One AMI message as recorded: its fields in order.
pub type Fields = Vec<(String, String)>;

/// The folder of the AMI recordings.
pub fn dir() -> PathBuf {
    match std::env::var_os("FICHE_AMI_RECORDINGS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/recordings/ami"),
    }
}

/// One recorded flow and what a correct tracker reports for it.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The flow's name (`expectations.json`'s `flow`).
    pub name: String,
    /// The AMI messages, in order.
    pub messages: Vec<Fields>,
    /// The expectation object.
    pub expect: Value,
}

/// Every flow listed in `expectations.json` whose recording is there.
pub fn flows() -> anyhow::Result<Vec<Flow>> {
    let dir = dir();
    let path = dir.join("expectations.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let list: Vec<Value> =
        serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    let mut flows = Vec::new();
    for expect in list {
        let Some(file) = expect["file"].as_str() else {
            bail!("{}: an entry has no \"file\"", path.display());
        };
        let name = expect["flow"].as_str().unwrap_or(file).to_owned();
        let messages = load(&dir.join(file))?;
        flows.push(Flow {
            name,
            messages,
            expect,
        });
    }
    Ok(flows)
}

/// Loads one recording: a JSON array of messages, or a raw AMI byte stream.
pub fn load(path: &Path) -> anyhow::Result<Vec<Fields>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        from_json(&bytes)
    } else {
        from_raw(&bytes)
    };
    parsed.with_context(|| path.display().to_string())
}

/// Messages of a JSON array of objects; the recorder's empty `content` key is dropped.
pub fn from_json(bytes: &[u8]) -> anyhow::Result<Vec<Fields>> {
    let list: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(bytes)?;
    Ok(list
        .into_iter()
        .map(|object| {
            object
                .into_iter()
                .filter(|(k, v)| !(k == "content" && v.as_str().is_some_and(str::is_empty)))
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect()
        })
        .collect())
}

/// Messages of a raw AMI byte stream, framed by Fiche's own framer; a
/// leading banner line (`Asterisk Call Manager/…`) is skipped.
pub fn from_raw(bytes: &[u8]) -> anyhow::Result<Vec<Fields>> {
    let mut framer = AmiFramer::new();
    let mut buf = BytesMut::from(bytes);
    if !buf.ends_with(b"\r\n\r\n") {
        buf.extend_from_slice(b"\r\n\r\n");
    }
    let mut messages = Vec::new();
    while let Some(message) = framer.decode(&mut buf)? {
        messages.push(fields(&message));
    }
    Ok(messages)
}

fn fields(message: &AmiMessage) -> Fields {
    message
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The `aliases` of a flow (peer name → extension), for Fiche's configuration.
pub fn aliases(expect: &Value) -> BTreeMap<String, String> {
    expect["aliases"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// What one call did, read from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallReport {
    /// `call_started`'s direction.
    pub direction: String,
    /// The caller's number, after any `parties_updated`.
    pub caller_number: Option<String>,
    /// The caller's name, after any `parties_updated`.
    pub caller_name: Option<String>,
    /// The callee's number.
    pub called: Option<String>,
    /// Every extension that rang, in order.
    pub rang: Vec<String>,
    /// The first `answered` event's extension (`Some(None)`: answered by no agent).
    pub answered: Option<Option<String>>,
    /// Each `transferred` event as `(kind, by, transferee, to)`.
    pub transfers: Vec<[Option<String>; 4]>,
    /// Who the caller talks to in the end: the last answer or transfer target.
    pub final_party: Option<String>,
    /// `ended`'s outcome.
    pub outcome: Option<String>,
}

/// Reports per call, in the order calls started; events of calls never started are errors.
pub fn reports(events: &[Value]) -> Result<Vec<CallReport>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut calls: BTreeMap<String, CallReport> = BTreeMap::new();
    let text = |v: &Value| v.as_str().map(str::to_owned);
    for event in events {
        let id = event["call_id"].as_str().unwrap_or_default().to_owned();
        let kind = event["type"].as_str().unwrap_or_default();
        if kind == "call_started" {
            if calls.contains_key(&id) {
                return Err(format!("call {id} started twice"));
            }
            order.push(id.clone());
            calls.insert(
                id,
                CallReport {
                    direction: text(&event["direction"]).unwrap_or_default(),
                    caller_number: text(&event["caller"]["number"]),
                    caller_name: text(&event["caller"]["name"]),
                    called: text(&event["callee"]["number"]),
                    ..CallReport::default()
                },
            );
            continue;
        }
        let Some(call) = calls.get_mut(&id) else {
            return Err(format!("{kind} for call {id} before its call_started"));
        };
        if call.outcome.is_some() {
            return Err(format!("{kind} for call {id} after its end"));
        }
        match kind {
            "ringing" => {
                if let Some(ext) = text(&event["extension"]) {
                    if !call.rang.contains(&ext) {
                        call.rang.push(ext);
                    }
                }
            }
            "answered" => {
                let extension = text(&event["extension"]);
                if call.answered.is_none() {
                    call.answered = Some(extension.clone());
                }
                if extension.is_some() {
                    call.final_party = extension;
                }
            }
            "parties_updated" => {
                call.caller_number = text(&event["caller"]["number"]);
                call.caller_name = text(&event["caller"]["name"]);
            }
            "transferred" => {
                if let Some(to) = text(&event["to"]) {
                    call.final_party = Some(to);
                }
                call.transfers.push([
                    text(&event["kind"]),
                    text(&event["by"]),
                    text(&event["transferee"]),
                    text(&event["to"]),
                ]);
            }
            "ended" => call.outcome = text(&event["outcome"]),
            _ => {}
        }
    }
    if let Some(open) = order.iter().find(|id| calls[*id].outcome.is_none()) {
        return Err(format!("call {open} never ended"));
    }
    Ok(order.iter().filter_map(|id| calls.remove(id)).collect())
}

/// The names a phone may be reported by: itself and its alias.
fn names(value: &str, aliases: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut set = BTreeSet::from([value.to_owned()]);
    if let Some(alias) = aliases.get(value) {
        set.insert(alias.clone());
    }
    for (peer, alias) in aliases {
        if alias == value {
            set.insert(peer.clone());
        }
    }
    set
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Checks a flow's events against its expectation; `Err` lists every difference.
pub fn check(expect: &Value, events: &[Value]) -> Result<(), String> {
    let first = check_one(expect, events);
    if first.is_ok() {
        return first;
    }
    // An expectation may list alternatives: other readings that are not wrong.
    for alternative in expect["alternatives"].as_array().into_iter().flatten() {
        let mut merged = expect.clone();
        if let (Some(base), Some(alt)) = (merged.as_object_mut(), alternative.as_object()) {
            for (k, v) in alt {
                base.insert(k.clone(), v.clone());
            }
        }
        if check_one(&merged, events).is_ok() {
            return Ok(());
        }
    }
    first
}

fn check_one(expect: &Value, events: &[Value]) -> Result<(), String> {
    let calls = reports(events)?;
    let aliases = aliases(expect);
    let mut wrong = Vec::new();
    let [min, max] = [0, 1].map(|i| expect["calls"][i].as_u64().unwrap_or(1) as usize);
    if calls.len() < min || calls.len() > max {
        wrong.push(format!(
            "{} call records, expected {min} to {max}",
            calls.len()
        ));
    }
    let Some(main) = calls.first() else {
        // A flow may rightly make no call (a click-to-dial the agent refused).
        if min > 0 {
            wrong.push("no call at all".to_owned());
        }
        return if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        };
    };
    if let Some(direction) = expect["direction"].as_str() {
        if main.direction != direction {
            wrong.push(format!(
                "direction {}, expected {direction}",
                main.direction
            ));
        }
    }
    let number = expect["caller"]["number"]
        .as_str()
        .filter(|s| !s.is_empty());
    if main.caller_number.as_deref() != number {
        wrong.push(format!(
            "caller number {:?}, expected {number:?}",
            main.caller_number
        ));
    }
    let name = expect["caller"]["name"].as_str().filter(|s| !s.is_empty());
    if main.caller_name.as_deref() != name {
        wrong.push(format!(
            "caller name {:?}, expected {name:?}",
            main.caller_name
        ));
    }
    let called = expect["called"].as_str();
    if main.called.as_deref() != called {
        wrong.push(format!("called {:?}, expected {called:?}", main.called));
    }
    let expected_rang: Vec<String> = strings(&expect["rang"]);
    let optional: Vec<String> = strings(&expect["rang_optional"]);
    for phone in &expected_rang {
        let accepted = names(phone, &aliases);
        if !main.rang.iter().any(|r| accepted.contains(r)) {
            wrong.push(format!("{phone} did not ring (rang: {:?})", main.rang));
        }
    }
    for rang in &main.rang {
        let allowed = expected_rang
            .iter()
            .chain(&optional)
            .any(|p| names(p, &aliases).contains(rang));
        if !allowed {
            wrong.push(format!("{rang} rang, which it should not"));
        }
    }
    match expect["answered_by"].as_str() {
        Some(phone) => {
            let accepted = names(phone, &aliases);
            let answered = main.answered.clone().flatten();
            if !answered.as_ref().is_some_and(|a| accepted.contains(a)) {
                wrong.push(format!("answered by {:?}, expected {phone}", main.answered));
            }
        }
        None => {
            if let Some(Some(by)) = &main.answered {
                wrong.push(format!("answered by {by}, expected no answer"));
            }
        }
    }
    let mut outcomes = strings(&expect["outcome"]);
    outcomes.extend(strings(&expect["outcome_also"]));
    if !main.outcome.as_ref().is_some_and(|o| outcomes.contains(o)) {
        wrong.push(format!("outcome {:?}, expected {outcomes:?}", main.outcome));
    }
    let expected_transfers = expect["transfers"].as_array().cloned().unwrap_or_default();
    if expected_transfers.len() != main.transfers.len() {
        wrong.push(format!(
            "{} transfers {:?}, expected {}",
            main.transfers.len(),
            main.transfers,
            expected_transfers.len()
        ));
    } else {
        for (expected, [kind, by, transferee, to]) in expected_transfers.iter().zip(&main.transfers)
        {
            let fits = |field: &str, actual: &Option<String>| -> bool {
                let accepted: BTreeSet<String> = strings(&expected[field])
                    .iter()
                    .flat_map(|v| names(v, &aliases))
                    .collect();
                accepted.is_empty() || actual.as_ref().is_some_and(|a| accepted.contains(a))
            };
            if kind.as_deref() != expected["kind"].as_str() {
                wrong.push(format!(
                    "transfer kind {kind:?}, expected {}",
                    expected["kind"]
                ));
            }
            for (field, actual) in [("by", by), ("transferee", transferee), ("to", to)] {
                if !fits(field, actual) {
                    wrong.push(format!(
                        "transfer {field} {actual:?}, expected {}",
                        expected[field]
                    ));
                }
            }
        }
    }
    if let Some(party) = expect["final_party"].as_str() {
        let last = main.final_party.clone();
        if !last
            .as_ref()
            .is_some_and(|l| names(party, &aliases).contains(l))
        {
            wrong.push(format!("final party {last:?}, expected {party}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}
