//! Calls become tickets: HEP SIP flows through the real server, tickets read
//! back through the API (and the database after a shutdown).

use super::{hep_packet, json, send_udp, Running, WAIT};
use serde_json::Value;
use std::time::Duration;

const CALLER: &str = "127.0.0.1:5080";
const PHONE: &str = "127.0.0.1:5081";

/// A call from `from` to `to`, answered (then hung up by the caller) or not
/// (480 after ringing).
fn flow(call_id: &str, from: &str, to: &str, answered: bool) -> Vec<Vec<u8>> {
    let from_header = format!("From: <sip:{from}@{CALLER}>;tag=a-{call_id}");
    let invite = format!(
        "INVITE sip:{to}@{PHONE} SIP/2.0\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-1\r\n\
Max-Forwards: 70\r\n{from_header}\r\nTo: <sip:{to}@{PHONE}>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from}@{CALLER}>\r\n\
Content-Length: 0\r\n\r\n"
    );
    let response = |status: &str, cseq: &str, branch: u8| {
        format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{branch}\r\n\
{from_header}\r\nTo: <sip:{to}@{PHONE}>;tag=b-{call_id}\r\nCall-ID: {call_id}\r\n\
CSeq: {cseq}\r\nContact: <sip:{to}@{PHONE}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let request = |method: &str, cseq: &str, branch: u8| {
        format!(
            "{method} sip:{to}@{PHONE} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{branch}\r\n\
{from_header}\r\nTo: <sip:{to}@{PHONE}>;tag=b-{call_id}\r\nCall-ID: {call_id}\r\n\
CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut sip = vec![
        (CALLER, PHONE, invite),
        (PHONE, CALLER, response("180 Ringing", "1 INVITE", 1)),
    ];
    if answered {
        sip.push((PHONE, CALLER, response("200 OK", "1 INVITE", 1)));
        sip.push((CALLER, PHONE, request("ACK", "1 ACK", 2)));
        sip.push((CALLER, PHONE, request("BYE", "2 BYE", 3)));
        sip.push((PHONE, CALLER, response("200 OK", "2 BYE", 3)));
    } else {
        sip.push((
            PHONE,
            CALLER,
            response("480 Temporarily Unavailable", "1 INVITE", 1),
        ));
    }
    sip.iter()
        .map(|(src, dst, text)| hep_packet(src, dst, text, None))
        .collect()
}

/// Polls `path` until `done` holds for its JSON (the writer is asynchronous).
async fn until(fiche: &Running, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = fiche.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let value = json(&body);
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never matched: {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_answered_call_makes_one_ticket_with_its_duration() {
    let fiche = Running::start("").await;
    send_udp(fiche.hep, &flow("t-answered", "0612345678", "201", true)).await;
    let page = until(&fiche, "/api/tickets", |v| {
        v["items"][0]["last_call"]["outcome"] == "answered"
    })
    .await;
    assert_eq!(page["total"], 1);
    let ticket = &page["items"][0];
    assert_eq!(ticket["kind"], "call");
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["phone_e164"], "+33612345678");
    assert_eq!(ticket["last_call"]["direction"], "inbound");
    assert_eq!(ticket["last_call"]["agent_extension"], "201");
    assert!(ticket["last_call"]["duration_secs"].is_i64(), "{ticket}");

    // Its page carries the call and accepts a note and a reason.
    let id = ticket["id"].as_i64().unwrap();
    let (status, body) = fiche
        .request(
            "POST",
            &format!("/api/tickets/{id}/notes"),
            Some(&serde_json::json!({"body": "Veut un devis <b>vite</b>"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = fiche
        .request(
            "PATCH",
            &format!("/api/tickets/{id}"),
            Some(&serde_json::json!({"reason": "devis", "priority": "high", "status": "closed"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let full = json(&body);
    assert_eq!(full["reason"], "devis");
    assert_eq!(full["priority"], "high");
    assert_eq!(full["status"], "closed");
    assert_eq!(full["calls"].as_array().unwrap().len(), 1);
    let kinds: Vec<&str> = full["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["note", "status"]);
    assert_eq!(
        full["events"][0]["body"]["text"],
        "Veut un devis <b>vite</b>"
    );

    // The call log has it too.
    let (status, body) = fiche
        .get("/api/calls?direction=inbound&number=06%2012%2034%2056%2078")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["total"], 1);
    let (status, body) = fiche.get("/api/kpis").await;
    assert_eq!(status, 200, "{body}");
    let figures = json(&body);
    assert_eq!(figures["calls_in"], 1);
    assert_eq!(figures["answered_rate"], 1.0);
    fiche.stop().await;
}

#[tokio::test]
async fn missed_calls_merge_into_one_callback_closed_by_calling_back() {
    let fiche = Running::start("[tickets]\ncallback_delay_minutes = 45\n").await;
    send_udp(fiche.hep, &flow("t-missed-1", "0612345678", "201", false)).await;
    let page = until(&fiche, "/api/tickets?kind=callback", |v| v["total"] == 1).await;
    let callback = &page["items"][0];
    assert_eq!(callback["status"], "open");
    assert_eq!(callback["attempts"], 1);
    assert_eq!(callback["phone_display"], "06 12 34 56 78");
    let created =
        chrono::DateTime::parse_from_rfc3339(callback["created_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(callback["due_at"].as_str().unwrap()).unwrap();
    let delay = (due - created).num_minutes();
    assert!(
        (44..=45).contains(&delay),
        "due 45 min after the end: {delay}"
    );

    // The same number again: one ticket, two attempts.
    send_udp(fiche.hep, &flow("t-missed-2", "+33612345678", "201", false)).await;
    let page = until(&fiche, "/api/tickets?kind=callback", |v| {
        v["items"][0]["attempts"] == 2
    })
    .await;
    assert_eq!(page["total"], 1);
    assert_eq!(
        page["items"][0]["attempt_times"].as_array().unwrap().len(),
        2
    );
    let id = page["items"][0]["id"].as_i64().unwrap();

    // Replaying the first missed call changes nothing.
    send_udp(fiche.hep, &flow("t-missed-1", "0612345678", "201", false)).await;

    // The agent calls back and the customer answers: the callback closes itself.
    send_udp(fiche.hep, &flow("t-callback", "201", "0612345678", true)).await;
    let ticket = until(&fiche, &format!("/api/tickets/{id}"), |v| {
        v["status"] == "closed"
    })
    .await;
    assert_eq!(ticket["attempts"], 2);
    let reached: Vec<&Value> = ticket["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "reached")
        .collect();
    assert_eq!(reached.len(), 1);
    assert!(reached[0]["call_id"].is_string());
    let (_, body) = fiche.get("/api/tickets?kind=callback&status=open").await;
    assert_eq!(json(&body)["total"], 0);
    // The call that reached the customer is that ticket's call: no second ticket.
    let (_, body) = fiche.get("/api/tickets").await;
    assert_eq!(json(&body)["total"], 1);
    assert_eq!(ticket["last_call"]["direction"], "outbound");
    assert_eq!(ticket["calls"].as_array().unwrap().len(), 3);
    fiche.stop().await;
}

#[tokio::test]
async fn a_replayed_call_does_not_duplicate_its_ticket() {
    let fiche = Running::start("").await;
    let packets = flow("t-replay", "0611111111", "201", true);
    send_udp(fiche.hep, &packets).await;
    until(&fiche, "/api/tickets", |v| {
        v["items"][0]["last_call"]["outcome"] == "answered"
    })
    .await;
    send_udp(fiche.hep, &packets).await;
    // A later, different call proves the replay went through the writer first.
    send_udp(fiche.hep, &flow("t-after", "0622222222", "201", true)).await;
    let page = until(&fiche, "/api/tickets", |v| v["total"] == 2).await;
    let numbers: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["phone_e164"].as_str().unwrap())
        .collect();
    assert!(numbers.contains(&"+33611111111") && numbers.contains(&"+33622222222"));
    let (_, body) = fiche.get("/api/calls").await;
    assert_eq!(json(&body)["total"], 2);
    fiche.stop().await;
}

#[tokio::test]
async fn stopping_the_server_writes_every_ticket_first() {
    let mut fiche = Running::start("").await;
    let calls = 20;
    for i in 0..calls {
        send_udp(
            fiche.hep,
            &flow(
                &format!("t-drain-{i}"),
                &format!("06123400{i:02}"),
                "201",
                false,
            ),
        )
        .await;
    }
    // Every call has gone through the pipeline; the writer may still be busy.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live = fiche.live_calls().await;
        if live.len() == calls && live.iter().all(|c| c["state"] == "ended") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "calls never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let path = fiche._db_dir.path().join("fiche.db");
    fiche.shutdown.cancel();
    let result = tokio::time::timeout(WAIT, &mut fiche.task).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    let store = fiche_store::Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (total, tickets) = store
        .list_tickets(&fiche_store::TicketQuery {
            kind: Some(fiche_store::TicketKind::Callback),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, calls as u64, "{tickets:?}");
    store.close().await;
}

#[tokio::test]
async fn tickets_and_calls_need_a_session_and_originate_needs_ami() {
    let fiche = Running::start("").await;
    for path in ["/api/tickets", "/api/calls", "/api/kpis"] {
        let response = fiche.send("GET", path, None, None).await;
        assert_eq!(response.status, 401, "{path}");
    }
    let (status, body) = fiche
        .request(
            "POST",
            "/api/calls/originate",
            Some(&serde_json::json!({"number": "0612345678"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["error"]["code"], "no_ami");
    let (status, body) = fiche.get("/api/kpis?from=yesterday").await;
    assert_eq!(status, 422, "{body}");
    fiche.stop().await;
}

/// The next hub message of `kind`, skipping the others.
async fn next_of(ws: &mut super::Ws, kind: &str) -> Value {
    loop {
        let message = super::next_event(ws).await;
        if message["type"] == kind {
            return message;
        }
    }
}

/// Claire, agent at extension 201, logged in with her page's socket open
/// (its snapshot read); her session token and the socket.
async fn claire_at_201(fiche: &Running) -> (String, super::Ws) {
    let (status, body) = fiche
        .request(
            "POST",
            "/api/users",
            Some(&serde_json::json!({
                "login": "claire", "display_name": "Claire", "role": "agent",
                "extensions": ["201"], "password": "claire-password"
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = fiche.login("claire", "claire-password").await;
    let mut ws = super::connect_ws(fiche.http, "/ws", Some(&token))
        .await
        .unwrap();
    next_of(&mut ws, "snapshot").await;
    (token, ws)
}

#[tokio::test]
async fn the_pop_card_names_the_caller_then_brings_the_file() {
    let fiche = Running::start("").await;
    let customer = |name: &str, company: &str| {
        serde_json::json!({
            "name": name, "company": company, "tags": ["VIP"],
            "notes": "Préfère le matin",
            "phones": [{"number": "06 12 34 56 78"}]
        })
    };
    for body in [
        customer("Hélène Dupont", "Boulangerie du Port"),
        customer("Marc Dupont", "Garage Dupont"),
    ] {
        let (status, body) = fiche.request("POST", "/api/customers", Some(&body)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (token, mut ws) = claire_at_201(&fiche).await;

    send_udp(fiche.hep, &flow("t-pop", "0612345678", "201", false)).await;
    let pop = next_of(&mut ws, "pop").await;
    let card = &pop["card"];
    assert_eq!(card["caller_display"], "06 12 34 56 78");
    assert_eq!(card["unknown"], false);
    let first = card["customer"]["name"].as_str().unwrap();
    assert!(first.ends_with("Dupont"), "{card}");
    assert_eq!(card["customer"]["tags"][0], "VIP");
    assert_eq!(card["other_matches"].as_array().unwrap().len(), 1);
    // Then the file from the store: notes.
    let full = next_of(&mut ws, "card").await;
    assert_eq!(full["card"]["customer"]["notes"], "Préfère le matin");
    assert_eq!(full["card"]["customer"]["name"], first);

    // Nobody has this number: an unknown caller card.
    send_udp(
        fiche.hep,
        &flow("t-pop-unknown", "0699887766", "201", false),
    )
    .await;
    let pop = next_of(&mut ws, "pop").await;
    assert_eq!(pop["card"]["unknown"], true);
    assert_eq!(pop["card"]["caller_display"], "06 99 88 77 66");
    assert!(pop["card"]["customer"].is_null());

    // The missed call from an unknown number goes to Claire, whose phone alone rang.
    until(&fiche, "/api/tickets?kind=callback&q=699887766", |v| {
        v["total"] == 1
    })
    .await;
    let mine = fiche
        .send(
            "GET",
            "/api/tickets?assignee=me&kind=callback",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(json(&mine.body)["total"], 2, "{}", mine.body);
    fiche.stop().await;
}

/// Two customers behind one switchboard number: the pop shows first the one
/// last in touch, and a call from one of them on another line changes that at
/// once, not at the next restart.
#[tokio::test]
async fn a_shared_number_pops_the_customer_last_in_touch_first() {
    let fiche = Running::start("").await;
    let customer = |name: &str, phones: &[&str]| {
        let phones: Vec<Value> = phones
            .iter()
            .map(|p| serde_json::json!({ "number": p }))
            .collect();
        serde_json::json!({ "name": name, "company": "Port de Brest", "phones": phones })
    };
    for body in [
        customer("Hélène Le Goff", &["01 40 00 00 00"]),
        customer("Marc Kervella", &["01 40 00 00 00", "06 11 22 33 44"]),
    ] {
        let (status, body) = fiche.request("POST", "/api/customers", Some(&body)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, mut ws) = claire_at_201(&fiche).await;
    let popped = |pop: &Value| pop["card"]["customer"]["name"].as_str().map(str::to_owned);
    let wait_for_row = |number: &'static str| {
        let path = format!("/api/calls?number={number}&limit=10");
        let fiche = &fiche;
        async move {
            until(fiche, &path, |page| {
                page["items"]
                    .as_array()
                    .is_some_and(|items| !items.is_empty())
            })
            .await
        }
    };

    // Nobody was in touch yet: the first customer, Hélène; her call makes her the last.
    send_udp(fiche.hep, &flow("shared-1", "0140000000", "201", true)).await;
    let pop = next_of(&mut ws, "pop").await;
    assert_eq!(popped(&pop).as_deref(), Some("Hélène Le Goff"), "{pop}");
    assert_eq!(
        pop["card"]["other_matches"].as_array().map(Vec::len),
        Some(1)
    );
    wait_for_row("%2B33140000000").await;

    // Marc calls from his mobile: now he is the last in touch.
    send_udp(fiche.hep, &flow("marc-mobile", "0611223344", "201", true)).await;
    let pop = next_of(&mut ws, "pop").await;
    assert_eq!(popped(&pop).as_deref(), Some("Marc Kervella"), "{pop}");
    wait_for_row("%2B33611223344").await;

    send_udp(fiche.hep, &flow("shared-2", "0140000000", "201", true)).await;
    let pop = next_of(&mut ws, "pop").await;
    assert_eq!(popped(&pop).as_deref(), Some("Marc Kervella"), "{pop}");
}

#[tokio::test]
async fn a_later_call_joins_the_customers_open_ticket_when_configured() {
    let fiche = Running::start("[tickets]\nlink_to_open_ticket = true\n").await;
    let (status, body) = fiche
        .request(
            "POST",
            "/api/customers",
            Some(&serde_json::json!({
                "name": "Hélène Dupont", "phones": [{"number": "06 12 34 56 78"}]
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    send_udp(fiche.hep, &flow("t-link-1", "0612345678", "201", true)).await;
    let page = until(&fiche, "/api/tickets", |v| {
        v["items"][0]["last_call"]["outcome"] == "answered"
    })
    .await;
    assert_eq!(page["items"][0]["customer_name"], "Hélène Dupont");
    let id = page["items"][0]["id"].as_i64().unwrap();
    send_udp(fiche.hep, &flow("t-link-2", "0612345678", "201", true)).await;
    let ticket = until(&fiche, &format!("/api/tickets/{id}"), |v| {
        v["calls"].as_array().is_some_and(|c| c.len() == 2)
    })
    .await;
    assert_eq!(ticket["events"][0]["kind"], "call");
    let (_, body) = fiche.get("/api/tickets").await;
    assert_eq!(json(&body)["total"], 1);
    fiche.stop().await;
}

#[tokio::test]
async fn supervisors_see_the_figures_move() {
    let fiche = Running::start("").await;
    let mut ws = super::connect_ws(fiche.http, "/ws", Some(&fiche.token))
        .await
        .unwrap();
    next_of(&mut ws, "snapshot").await;
    send_udp(fiche.hep, &flow("t-fig-1", "0612345678", "201", false)).await;
    loop {
        let figures = next_of(&mut ws, "figures").await;
        if figures["figures"]["missed"] == 1 {
            assert_eq!(figures["figures"]["calls_in"], 1);
            assert_eq!(figures["figures"]["missed_not_called_back"], 1);
            assert_eq!(figures["figures"]["open_tickets"], 1);
            break;
        }
    }
    fiche.stop().await;
}

/// One ticket writer over `store`, fed `events`, run until they are all written.
async fn write(store: &fiche_store::Store, events: &[fiche_pbx::CallEvent]) {
    use fiche_server::customer_memory::CustomerMemory;
    use fiche_server::tickets::{cards::CardMaker, writer::TicketWriter};
    let cards = CardMaker {
        customers: CustomerMemory::default(),
        policy: Default::default(),
        store: store.clone(),
        odoo_url: None,
    };
    let writer = TicketWriter::new(
        store.clone(),
        fiche_hub::Hub::new(fiche_hub::HubConfig::default()),
        cards,
        Default::default(),
        Default::default(),
        Default::default(),
    );
    // Everything is queued before the writer starts, so that it takes the events
    // as one batch (up to its batch size).
    let (tx, rx) = tokio::sync::mpsc::channel(events.len().max(1));
    for event in events {
        tx.send(event.clone().into()).await.unwrap();
    }
    drop(tx);
    writer.run(rx).await;
}

#[tokio::test]
async fn a_restart_mid_call_or_a_replay_after_one_keeps_one_ticket_per_call() {
    use fiche_pbx::{CallEvent, CallEventKind, CallId, Extension, Party, Source};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fiche.db").display());
    let store = fiche_store::Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let at = chrono::Utc::now();
    let event = |key: &str, kind: CallEventKind| CallEvent {
        call_id: CallId::from_source_key(Source::Ami, key),
        source: Source::Ami,
        at,
        kind,
    };
    let started = |key: &str| {
        event(
            key,
            CallEventKind::CallStarted {
                source_key: key.to_owned(),
                direction: fiche_pbx::Direction::Inbound,
                caller: Party {
                    number: Some("0612345678".into()),
                    name: None,
                    withheld: false,
                },
                callee: Party {
                    number: Some("600".into()),
                    name: None,
                    withheld: false,
                },
                diverted_from: Vec::new(),
                queue: None,
            },
        )
    };
    let ringing = |key: &str| {
        event(
            key,
            CallEventKind::Ringing {
                extension: Extension::new("201").unwrap(),
            },
        )
    };
    let ended = |key: &str, outcome| {
        event(
            key,
            CallEventKind::Ended {
                outcome,
                cause: "test".into(),
            },
        )
    };
    let missed = [
        started("m1"),
        ringing("m1"),
        ended("m1", fiche_pbx::Outcome::Missed),
    ];
    write(&store, &missed).await;
    // The same events again after a restart (an AMI resync, a replayed capture).
    write(&store, &missed).await;
    let answered = event(
        "a1",
        CallEventKind::Answered {
            extension: Extension::new("201"),
        },
    );
    // Fiche stops while the customer's call back is connected...
    write(&store, &[started("a1"), ringing("a1"), answered]).await;
    // ...and sees its end after the restart.
    write(&store, &[ended("a1", fiche_pbx::Outcome::Answered)]).await;

    let (total, tickets) = store
        .list_tickets(&fiche_store::TicketQuery::default())
        .await
        .unwrap();
    // The answered call reached the customer: it closed the callback and is
    // that ticket's call, no second ticket.
    assert_eq!(total, 1, "{tickets:?}");
    let callback = &tickets[0];
    assert_eq!(callback.kind, fiche_store::TicketKind::Callback);
    assert_eq!(callback.attempts, 1);
    let linked = store
        .ticket_for_call(CallId::from_source_key(Source::Ami, "a1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(linked.id, callback.id);
    assert_eq!(callback.status, fiche_store::TicketStatus::Closed);
    let call = store
        .get_call(CallId::from_source_key(Source::Ami, "a1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.outcome, Some(fiche_pbx::Outcome::Answered));
    assert!(call.ended_at.is_some());
    assert_eq!(call.agent_extension.as_deref(), Some("201"));
    store.close().await;
}

/// Events of calls from 06 12 34 56 78 to the ring group 600, for [`write`].
mod events {
    use fiche_pbx::{
        CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Party, Source,
    };

    pub(super) fn event(key: &str, kind: CallEventKind) -> CallEvent {
        CallEvent {
            call_id: CallId::from_source_key(Source::Ami, key),
            source: Source::Ami,
            at: chrono::Utc::now(),
            kind,
        }
    }

    pub(super) fn started(key: &str, direction: Direction) -> CallEvent {
        let (caller, callee) = match direction {
            Direction::Outbound => ("201", "0612345678"),
            _ => ("0612345678", "600"),
        };
        let party = |n: &str| Party {
            number: Some(n.into()),
            name: None,
            withheld: false,
        };
        event(
            key,
            CallEventKind::CallStarted {
                source_key: key.to_owned(),
                direction,
                caller: party(caller),
                callee: party(callee),
                diverted_from: Vec::new(),
                queue: None,
            },
        )
    }

    pub(super) fn ringing(key: &str) -> CallEvent {
        event(
            key,
            CallEventKind::Ringing {
                extension: Extension::new("201").unwrap(),
            },
        )
    }

    pub(super) fn answered(key: &str) -> CallEvent {
        event(
            key,
            CallEventKind::Answered {
                extension: Extension::new("201"),
            },
        )
    }

    pub(super) fn ended(key: &str, outcome: Outcome) -> CallEvent {
        event(
            key,
            CallEventKind::Ended {
                outcome,
                cause: "test".into(),
            },
        )
    }
}

async fn scratch_store() -> (tempfile::TempDir, fiche_store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fiche.db").display());
    let store = fiche_store::Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn one_batch_merges_missed_calls_and_closes_them_when_the_customer_is_reached() {
    use events::*;
    use fiche_pbx::{Direction, Outcome};
    let (_dir, store) = scratch_store().await;
    // Two missed calls and the call back, all in one batch: each step reads what
    // the previous one wrote in the same transaction.
    write(
        &store,
        &[
            started("b-m1", Direction::Inbound),
            ringing("b-m1"),
            started("b-m2", Direction::Inbound),
            ringing("b-m2"),
            ended("b-m1", Outcome::Missed),
            ended("b-m2", Outcome::Missed),
        ],
    )
    .await;
    let (total, tickets) = store
        .list_tickets(&fiche_store::TicketQuery::default())
        .await
        .unwrap();
    assert_eq!(total, 1, "{tickets:?}");
    assert_eq!(tickets[0].attempts, 2);
    assert_eq!(tickets[0].status, fiche_store::TicketStatus::Open);
    write(
        &store,
        &[
            started("b-out", Direction::Outbound),
            answered("b-out"),
            ended("b-out", Outcome::Answered),
            // A replay of the first missed call in the same batch changes nothing.
            started("b-m1", Direction::Inbound),
            ended("b-m1", Outcome::Missed),
        ],
    )
    .await;
    let (total, tickets) = store
        .list_tickets(&fiche_store::TicketQuery::default())
        .await
        .unwrap();
    assert_eq!(total, 1, "{tickets:?}");
    assert_eq!(tickets[0].status, fiche_store::TicketStatus::Closed);
    assert_eq!(tickets[0].attempts, 2);
    store.close().await;
}

#[tokio::test]
async fn an_event_the_store_refuses_loses_only_itself() {
    use events::*;
    use fiche_pbx::{Direction, Outcome};
    let (_dir, store) = scratch_store().await;
    // A call whose key the store refuses (too long), among good ones in one batch.
    let bad = "x".repeat(2000);
    write(
        &store,
        &[
            started("good-1", Direction::Inbound),
            started(&bad, Direction::Inbound),
            ringing("good-1"),
            ended(&bad, Outcome::Missed),
            ended("good-1", Outcome::Missed),
            started("good-2", Direction::Outbound),
            answered("good-2"),
            ended("good-2", Outcome::Answered),
        ],
    )
    .await;
    let (_, tickets) = store
        .list_tickets(&fiche_store::TicketQuery::default())
        .await
        .unwrap();
    // The missed call's callback was written, then closed by the answered call
    // back, which is linked to it: both good calls made it, the bad one only is lost.
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0].status, fiche_store::TicketStatus::Closed);
    for key in ["good-1", "good-2"] {
        let id = fiche_pbx::CallId::from_source_key(fiche_pbx::Source::Ami, key);
        let call = store.get_call(id).await.unwrap().unwrap();
        assert!(call.ended_at.is_some(), "{key}");
    }
    store.close().await;
}

/// The live call whose caller is `number`, once it rings.
async fn ringing_call(fiche: &Running, number: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live = fiche.live_calls().await;
        if let Some(call) = live
            .iter()
            .find(|c| c["caller"]["number"] == number && c["state"] == "ringing")
        {
            return call["id"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never rang: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn notes(ticket: &Value) -> Vec<String> {
    ticket["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "note")
        .map(|e| e["body"]["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_note_saved_while_the_phone_rings_lands_on_the_calls_ticket() {
    let fiche = Running::start("").await;
    let packets = flow("t-draft", "0612345678", "201", true);
    // INVITE and 180: the phone rings, nobody has answered yet.
    send_udp(fiche.hep, &packets[..2]).await;
    let call_id = ringing_call(&fiche, "0612345678").await;
    let path = format!("/api/calls/{call_id}/ticket");
    let (status, body) = fiche
        .request(
            "POST",
            &path,
            Some(&serde_json::json!({"note": "Veut un devis", "reason": "order", "priority": "high"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(json(&body)["state"], "held");
    // Answered, then hung up: the note is on the call's ticket, once.
    send_udp(fiche.hep, &packets[2..]).await;
    let page = until(&fiche, "/api/tickets", |v| {
        v["items"][0]["last_call"]["outcome"] == "answered"
    })
    .await;
    assert_eq!(page["total"], 1);
    let id = page["items"][0]["id"].as_i64().unwrap();
    let (_, body) = fiche.get(&format!("/api/tickets/{id}")).await;
    let ticket = json(&body);
    assert_eq!(ticket["reason"], "order");
    assert_eq!(ticket["priority"], "high");
    assert_eq!(notes(&ticket), ["Veut un devis"]);
    // After the call, the same save goes straight to the ticket.
    let (status, body) = fiche
        .request(
            "POST",
            &path,
            Some(&serde_json::json!({"note": "Devis envoyé", "status": "closed"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let saved = json(&body);
    assert_eq!(saved["state"], "applied");
    assert_eq!(saved["ticket"]["id"], id);
    assert_eq!(saved["ticket"]["status"], "closed");
    assert_eq!(notes(&saved["ticket"]), ["Veut un devis", "Devis envoyé"]);

    // A call nobody knows of, and an empty save, are refused.
    let (status, _) = fiche
        .request(
            "POST",
            "/api/calls/00000000-0000-0000-0000-000000000000/ticket",
            Some(&serde_json::json!({"note": "?"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = fiche
        .request("POST", &path, Some(&serde_json::json!({"note": "  "})))
        .await;
    assert_eq!(status, 422);
    fiche.stop().await;
}

#[tokio::test]
async fn notes_typed_while_missed_calls_rang_join_the_merged_callback() {
    let fiche = Running::start("").await;
    for (key, text) in [("t-dm-1", "Premier essai"), ("t-dm-2", "Rappelle vite")] {
        let packets = flow(key, "0612345678", "201", false);
        send_udp(fiche.hep, &packets[..2]).await;
        let call_id = ringing_call(&fiche, "0612345678").await;
        let (status, body) = fiche
            .request(
                "POST",
                &format!("/api/calls/{call_id}/ticket"),
                Some(&serde_json::json!({"note": text})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        send_udp(fiche.hep, &packets[2..]).await;
        until(&fiche, "/api/calls/live", |v| {
            v.as_array()
                .unwrap()
                .iter()
                .all(|c| c["state"] != "ringing")
        })
        .await;
    }
    let page = until(&fiche, "/api/tickets?kind=callback", |v| {
        v["items"][0]["attempts"] == 2
    })
    .await;
    assert_eq!(page["total"], 1);
    let id = page["items"][0]["id"].as_i64().unwrap();
    let ticket = until(&fiche, &format!("/api/tickets/{id}"), |v| {
        notes(v).len() == 2
    })
    .await;
    assert_eq!(notes(&ticket), ["Premier essai", "Rappelle vite"]);
    let (_, body) = fiche.get("/api/tickets").await;
    assert_eq!(json(&body)["total"], 1);
    fiche.stop().await;
}
