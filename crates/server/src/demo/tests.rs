//! What the simulated phone system sends is what a real PBX's mirror sends:
//! each scenario's SIP, wrapped in HEP and decoded again, read by the real
//! tracker, makes the calls the scenario announces.

use super::phone::pick;
use super::scenario::{script, Caller, Scenario, Timing};
use super::sip::SipPacket;
use fiche_pbx::hep::{decode, try_encode, HepPacket, PayloadEncoding, PROTO_TYPE_SIP};
use fiche_pbx::model::{CallEventKind as K, Outcome, StopCause, TransferKind};
use fiche_pbx::sip::{SipTracker, SipTrackerConfig};
use fiche_pbx::{CallId, ExtensionPatterns, Source};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const TIMING: Timing = Timing {
    ring: Duration::from_secs(5),
    talk: Duration::from_secs(12),
};

fn customer() -> Caller {
    Caller {
        number: "0261911234".into(),
        display: "BERNARD SOPHIE".into(),
    }
}

/// `packet` through HEP: encoded as the phone system sends it, decoded by
/// the listener's decoder.
fn through_hep(packet: &SipPacket) -> HepPacket {
    let hep = HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: Some(packet.src),
        dst: Some(packet.dst),
        timestamp: Some(chrono::Utc::now()),
        proto_type: Some(PROTO_TYPE_SIP),
        capture_id: Some(101),
        auth_key: Some(bytes::Bytes::from_static(b"key")),
        payload: bytes::Bytes::from(packet.text.clone().into_bytes()),
        ..HepPacket::default()
    };
    let datagram = try_encode(&hep, PayloadEncoding::Plain).expect("encodes");
    let decoded = decode(&datagram).expect("decodes");
    assert_eq!(decoded.src, Some(packet.src));
    assert_eq!(decoded.dst, Some(packet.dst));
    assert!(decoded.is_sip());
    assert_eq!(decoded.auth_key.as_deref(), Some(&b"key"[..]));
    decoded
}

/// Plays `scenario` through HEP into a real tracker: each call's events, by Call-ID.
fn play(scenario: Scenario, caller: &Caller) -> HashMap<String, Vec<K>> {
    let script = script(scenario, "t1", caller, TIMING);
    let mut tracker = SipTracker::new(SipTrackerConfig {
        agents: ExtensionPatterns::new([r"[1-9]\d{1,4}"]).expect("patterns"),
        ..SipTrackerConfig::default()
    });
    let start = chrono::Utc::now();
    let ids: HashMap<CallId, String> = script
        .call_ids
        .iter()
        .map(|key| (CallId::from_source_key(Source::Hep, key), key.clone()))
        .collect();
    let mut calls: HashMap<String, Vec<K>> = HashMap::new();
    let mut last = Duration::ZERO;
    for step in &script.steps {
        assert!(step.at >= last, "steps are in time order");
        last = step.at;
        let packet = through_hep(&step.packet);
        let at = start + chrono::Duration::from_std(step.at).expect("duration");
        tracker
            .handle(at, packet.src, packet.dst, &packet.payload)
            .unwrap_or_else(|e| panic!("{e}:\n{}", step.packet.text));
        while let Some(event) = tracker.poll_event() {
            let key = ids
                .get(&event.call_id)
                .expect("an event of the script's calls");
            calls.entry(key.clone()).or_default().push(event.kind);
        }
    }
    assert_eq!(tracker.active_calls(), 0, "{scenario:?}: every call ended");
    calls
}

fn rang(kinds: &[K]) -> Vec<String> {
    kinds
        .iter()
        .filter_map(|k| match k {
            K::Ringing { extension } => Some(extension.to_string()),
            _ => None,
        })
        .collect()
}

fn answered_by(kinds: &[K]) -> Option<String> {
    kinds.iter().find_map(|k| match k {
        K::Answered { extension } => extension.as_ref().map(ToString::to_string),
        _ => None,
    })
}

fn outcome(kinds: &[K]) -> Option<Outcome> {
    match kinds.last() {
        Some(K::Ended { outcome, .. }) => Some(*outcome),
        _ => None,
    }
}

fn caller_of(kinds: &[K]) -> (Option<String>, bool) {
    match kinds.first() {
        Some(K::CallStarted { caller, .. }) => (caller.number.clone(), caller.withheld),
        other => panic!("a call starts with CallStarted, not {other:?}"),
    }
}

fn only(calls: &HashMap<String, Vec<K>>) -> &Vec<K> {
    assert_eq!(calls.len(), 1, "{calls:#?}");
    calls.values().next().expect("one call")
}

#[test]
fn a_customer_calls_claire_who_answers() {
    let calls = play(Scenario::KnownAnswered, &customer());
    let call = only(&calls);
    assert_eq!(caller_of(call), (Some("0261911234".into()), false));
    assert_eq!(rang(call), ["201"]);
    assert_eq!(answered_by(call).as_deref(), Some("201"));
    assert_eq!(outcome(call), Some(Outcome::Answered));
}

#[test]
fn the_ring_group_rings_both_agents_and_nadia_answers() {
    let calls = play(Scenario::GroupAnswered, &customer());
    let call = only(&calls);
    assert_eq!(rang(call), ["201", "202"]);
    assert_eq!(answered_by(call).as_deref(), Some("202"));
    assert!(call.contains(&K::RingingStopped {
        extension: fiche_pbx::Extension::new("201").expect("ext"),
        cause: StopCause::AnsweredElsewhere,
    }));
    assert_eq!(outcome(call), Some(Outcome::Answered));
}

#[test]
fn a_withheld_number_shows_no_number() {
    let calls = play(Scenario::WithheldGroup, &customer());
    let call = only(&calls);
    assert_eq!(caller_of(call), (None, true));
    assert_eq!(answered_by(call).as_deref(), Some("201"));
    assert!(
        !calls_text(Scenario::WithheldGroup).is_empty(),
        "the SIP still carries the asserted number, as operators send it"
    );
}

fn calls_text(scenario: Scenario) -> String {
    script(scenario, "t1", &customer(), TIMING)
        .steps
        .iter()
        .map(|s| s.packet.text.as_str())
        .filter(|t| t.contains("Privacy: id"))
        .collect()
}

#[test]
fn missed_calls_end_missed_for_a_callback() {
    let regular = Caller {
        number: "0261917788".into(),
        display: String::new(),
    };
    let calls = play(Scenario::KnownMissed, &regular);
    let call = only(&calls);
    assert_eq!(rang(call), ["201"]);
    assert_eq!(answered_by(call), None);
    assert_eq!(outcome(call), Some(Outcome::Missed));

    let calls = play(Scenario::RepeatMissed, &regular);
    let call = only(&calls);
    assert_eq!(rang(call), ["201", "202"]);
    assert_eq!(outcome(call), Some(Outcome::Missed));
}

#[test]
fn an_unknown_caller_reaches_nadia() {
    let stranger = Caller {
        number: "0261915501".into(),
        display: String::new(),
    };
    let call = only(&play(Scenario::UnknownAnswered, &stranger)).clone();
    assert_eq!(rang(&call), ["202"]);
    assert_eq!(answered_by(&call).as_deref(), Some("202"));
}

#[test]
fn claire_transfers_to_nadia_who_gets_the_new_leg() {
    let calls = play(Scenario::Transfer, &customer());
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let first = calls
        .iter()
        .find(|(key, _)| !key.contains("-transfer"))
        .map(|(_, kinds)| kinds)
        .expect("the first leg");
    assert_eq!(answered_by(first).as_deref(), Some("201"));
    assert!(first.iter().any(|k| matches!(k,
        K::Transferred(t) if t.kind == TransferKind::Blind
            && t.to.as_ref().map(|e| e.as_str()) == Some("202"))));
    let second = calls
        .iter()
        .find(|(key, _)| key.contains("-transfer"))
        .map(|(_, kinds)| kinds)
        .expect("the new leg");
    assert_eq!(caller_of(second), (Some("0261911234".into()), false));
    assert_eq!(rang(second), ["202"]);
    assert_eq!(answered_by(second).as_deref(), Some("202"));
}

#[test]
fn every_scenario_makes_only_calls_the_tracker_understands() {
    for scenario in Scenario::ROTATION {
        let calls = play(scenario, &customer());
        for (key, kinds) in &calls {
            assert!(
                outcome(kinds).is_some(),
                "{scenario:?} {key}: {kinds:#?} has no end"
            );
            assert!(
                rang(kinds)
                    .iter()
                    .all(|ext| scenario.phones().contains(&ext.as_str())),
                "{scenario:?} rings only its phones: {kinds:#?}"
            );
        }
    }
}

#[test]
fn an_agent_who_opens_her_page_gets_a_call_that_rings_her() {
    let none = HashSet::new();
    // From the start of the rotation, Nadia's first call is the ring group.
    assert_eq!(pick(0, Some("202"), &none), Scenario::GroupAnswered);
    assert_eq!(pick(3, Some("201"), &none), Scenario::WithheldGroup);
    // Claire on a call: the next call leaves her phone alone.
    let claire_busy: HashSet<&str> = ["201"].into();
    assert_eq!(pick(0, None, &claire_busy), Scenario::UnknownAnswered);
    // Everyone busy: calls go on (call waiting) in turn.
    let all: HashSet<&str> = ["201", "202"].into();
    assert_eq!(pick(2, None, &all), Scenario::KnownMissed);
}

#[test]
fn the_demo_listens_on_loopback_only() {
    use super::http_addr;
    let configured: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
    let (addr, warning) = http_addr(configured, None).expect("moved to loopback");
    assert_eq!(addr, "127.0.0.1:8080".parse().expect("addr"));
    assert!(warning.is_some());
    assert!(http_addr(configured, Some("0.0.0.0:9000".parse().expect("addr"))).is_err());
    assert!(http_addr(configured, Some("192.0.2.7:9000".parse().expect("addr"))).is_err());
    let local: std::net::SocketAddr = "[::1]:9000".parse().expect("addr");
    assert_eq!(http_addr(configured, Some(local)).expect("ok").0, local);
}

/// The demo keeps none of the production integrations a config file names:
/// its demo company must never reach a real PBX, webhook target or Odoo.
#[test]
fn the_demo_drops_the_production_integrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fiche.toml");
    std::fs::write(
        &path,
        "[[ami]]\nname = \"pbx\"\naddr = \"127.0.0.1:5038\"\nusername = \"fiche\"\nsecret = \"s\"\n\n\
         [[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\n\n\
         [odoo]\nurl = \"https://erp.example.com\"\ndatabase = \"prod\"\nlogin = \"fiche-bot\"\n",
    )
    .unwrap();
    let env = |name: &str| (name == "FICHE_ODOO_API_KEY").then(|| "key".to_owned());
    let config = crate::config::Config::load(Some(&path), env).unwrap();
    assert!(!config.ami.is_empty() && !config.webhooks.is_empty() && config.odoo.is_some());
    let args = super::DemoArgs {
        http: None,
        database: None,
    };
    let demo = super::demo_config(config, &args, "sqlite::memory:".into()).unwrap();
    assert!(demo.ami.is_empty());
    assert!(demo.webhooks.is_empty());
    assert!(demo.odoo.is_none());
    assert!(demo.http_addr.ip().is_loopback());
}
