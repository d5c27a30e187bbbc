//! Cloud phone systems as they really speak, end to end through the real
//! `fiche` binary: every case of Zammad's own request specs for its CTI
//! endpoints (zammad/zammad `spec/requests/integration/cti_spec.rb`,
//! `sipgate_spec.rb`, `placetel_spec.rb`) that has an observable counterpart
//! in Fiche (the status and body of the answer, the call in the call log, its
//! ticket), replayed with the specs' own parameters; then Aircall and Ringover
//! sequences built from their documentation (an inbound call answered, a
//! missed call to a ring group, a voicemail, a transfer, an outbound call),
//! each signed as the provider signs it, and a forged one refused.
//!
//! Cases of the specs without a counterpart: "feature not configured" (Fiche's
//! webhook needs no switch: a token is the configuration), the caller list's
//! `done` flags and `notify_map` filtering of the list (Fiche's counterpart is
//! the callback ticket, checked instead), and Zammad's caller-id comments.
//!
//! Nothing installed.

use anyhow::bail;
use base64::Engine as _;
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::testbed::fiche_binary;
use fiche_pbx::{CallId, Source};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::time::Duration;

const FORM: &str = "application/x-www-form-urlencoded";
const AIRCALL_TOKEN: &str = "aircall-webhook-token-from-the-dashboard";
const RINGOVER_KEY: &str = "ringover-webhook-key";

/// Zammad's spec settings (its `routing_table`, `default_caller_id`,
/// `block_caller_ids`), the agents' provider ids, a queue, and the providers' secrets.
const CONFIG: &str = r#"
[calls]
ended_linger_secs = 600

[cti]
blocked_numbers = ["+491715000000"]
voicemail_wait_secs = 1

[cti.outbound]
default_caller_id = "4930777000000"
routes = [
  { dest = "41*", caller_id = "41715880339000" },
  { dest = "491714000000", caller_id = "41715880339000" },
]

[cti.queues]
some_queue_name = ["201", "202"]

[cti.agents]
"w0" = "203"
"777008478072@example.com" = "204"
"216119" = "201"
"claire@example.com" = "202"
"jean.dupont@example.com" = "203"

[cti.aircall]
token = "aircall-webhook-token-from-the-dashboard"

[cti.ringover]
secret = "ringover-webhook-key"
"#;

/// `fiche cti token add NAME` on the scratch database: the printed token.
fn add_token(scratch: &Scratch, name: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new(fiche_binary()?)
        .args(["cti", "token", "add", name])
        .env(
            "FICHE_DATABASE_URL",
            format!("sqlite://{}/fiche.db", scratch.path().display()),
        )
        .env_remove("FICHE_CONFIG")
        .output()?;
    if !output.status.success() {
        bail!(
            "token add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// One POST of `body` as `content_type`, with these extra headers: status and body.
async fn post(
    port: u16,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut all = vec![("Content-Type", content_type)];
    all.extend_from_slice(headers);
    fiche_e2e::http::send(port, "POST", path, &all, body).await
}

/// A running Fiche with one CTI token.
struct Bench {
    fiche: FicheProcess,
    token: String,
    pbx: &'static str,
    _scratch: Scratch,
}

impl Bench {
    async fn start(pbx: &'static str, config: &str) -> Bench {
        let scratch = Scratch::create().unwrap();
        let token = add_token(&scratch, pbx).unwrap();
        let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(config.to_owned()), &[])
            .await
            .unwrap();
        Bench {
            fiche,
            token,
            pbx,
            _scratch: scratch,
        }
    }

    fn port(&self) -> u16 {
        self.fiche.http_port()
    }

    /// POST to `/api/v1/<route>/<token><tail>`.
    async fn send(&self, route: &str, tail: &str, content_type: &str, body: &str) -> (u16, String) {
        self.send_with(route, tail, content_type, &[], body).await
    }

    async fn send_with(
        &self,
        route: &str,
        tail: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let path = format!("/api/v1/{route}/{}{tail}", self.token);
        post(self.port(), &path, content_type, headers, body)
            .await
            .unwrap()
    }

    /// The call `call` of this PBX in the call log.
    async fn call(&self, call: &str) -> Value {
        let key = format!("{}/{call}", self.pbx);
        let page = self.fiche.get_json("/api/calls?limit=500").await.unwrap();
        page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|c| c["source_key"] == key.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("no call {key} in the log: {page}"))
    }

    /// Whether the call log has the call `call`.
    async fn has_call(&self, call: &str) -> bool {
        let key = format!("{}/{call}", self.pbx);
        let page = self.fiche.get_json("/api/calls?limit=500").await.unwrap();
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|c| c["source_key"] == key.as_str()))
    }

    /// The call, once it ended (calls ended by the voicemail wait end a
    /// moment after their last request).
    async fn ended_call(&self, call: &str) -> Value {
        for _ in 0..100 {
            let found = self.call(call).await;
            if !found["ended_at"].is_null() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("call {call} never ended: {}", self.call(call).await);
    }

    /// The ticket of the call `call`.
    async fn ticket(&self, call: &str) -> Option<Value> {
        let id = CallId::from_source_key(Source::Cti, &format!("{}/{call}", self.pbx)).to_string();
        let page = self.fiche.get_json("/api/tickets?limit=500").await.unwrap();
        page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|t| t["call_id"] == id.as_str()))
            .cloned()
    }

    /// The call's outcome, its ticket's kind and subject.
    async fn verdict(&self, call: &str) -> (String, String, String) {
        let found = self.ended_call(call).await;
        let ticket = self.ticket(call).await.unwrap_or(Value::Null);
        (
            found["outcome"].as_str().unwrap_or("-").to_owned(),
            ticket["kind"].as_str().unwrap_or("-").to_owned(),
            ticket["subject"].as_str().unwrap_or("-").to_owned(),
        )
    }
}

fn json_body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// `cti_spec.rb`, replayed against `POST /api/v1/cti/{token}`.
#[tokio::test]
async fn zammad_generic_cti_spec() {
    let bench = Bench::start("zammad", CONFIG).await;
    let cti = |body: &'static str| {
        let bench = &bench;
        async move {
            let (status, text) = bench.send("cti", "", FORM, body).await;
            (status, json_body(&text))
        }
    };
    let ok = (200, json!({}));

    // "does token check"
    let (status, text) = post(
        bench.port(),
        "/api/v1/cti/not_existing_token",
        FORM,
        &[],
        "event=newCall&direction=in&from=4912347114711&to=4930600000000&call_id=4991155921769858278-1&user=user+1",
    )
    .await
    .unwrap();
    assert_eq!(
        (status, json_body(&text)),
        (
            401,
            json!({"error": "Invalid token, please contact your admin!"})
        )
    );
    assert!(!bench.has_call("4991155921769858278-1").await);

    // "does basic call": inbound, a blocked caller, three outbound caller ids.
    assert_eq!(cti("event=newCall&direction=in&from=4912347114711&to=4930600000000&call_id=4991155921769858278-1&user%5B%5D=user%2B1&user%5B%5D=user%2B2").await, ok);
    assert_eq!(
        cti("event=newCall&direction=in&from=491715000000&to=4930600000000&call_id=4991155921769858278-2&user%5B%5D=user%2B1&user%5B%5D=user%2B2").await,
        (200, json!({"action": "reject", "reason": "busy"}))
    );
    assert!(
        !bench.has_call("4991155921769858278-2").await,
        "a blocked caller makes no call"
    );
    for (call, to, caller_id) in [
        ("8621106404543334274-3", "4912347114711", "4930777000000"),
        ("8621106404543334274-4", "491714000000", "41715880339000"),
        ("8621106404543334274-5", "4147110000000", "41715880339000"),
    ] {
        let body = format!(
            "event=newCall&direction=out&from=4930600000000&to={to}&call_id={call}&user=user+1"
        );
        let (status, text) = bench.send("cti", "", FORM, &body).await;
        assert_eq!(
            (status, json_body(&text)),
            (
                200,
                json!({"action": "dial", "caller_id": caller_id, "number": to})
            ),
            "{call}"
        );
    }

    // "does log call": outbound I, hung up by the agent before an answer.
    assert_eq!(cti("event=newCall&direction=out&from=4930600000000&to=4912347114711&call_id=1234567890-1&user=user+1").await.0, 200);
    let call = bench.call("1234567890-1").await;
    assert_eq!(call["direction"], "outbound");
    // Zammad's made-up German numbers are no valid numbers: kept as sent.
    assert_eq!(call["callee_number"], "4912347114711");
    assert!(call["ended_at"].is_null());
    assert_eq!(
        cti("event=hangup&direction=out&call_id=1234567890-1&cause=cancel").await,
        ok
    );
    let call = bench.call("1234567890-1").await;
    assert_eq!(
        (call["outcome"].as_str(), call["cause"].as_str()),
        (Some("missed"), Some("cancel"))
    );
    assert!(call["answered_at"].is_null());
    assert_eq!(
        bench.ticket("1234567890-1").await.unwrap()["kind"],
        "call",
        "an outbound call is never a callback"
    );

    // Outbound II: answered by the customer, then hung up.
    assert_eq!(cti("event=newCall&direction=out&from=4930600000000&to=4912347114711&call_id=1234567890-2&user%5B%5D=user+1").await.0, 200);
    assert_eq!(
        cti("event=answer&direction=out&call_id=1234567890-2&from=4930600000000&to=4912347114711")
            .await,
        ok
    );
    assert!(!bench.call("1234567890-2").await["answered_at"].is_null());
    assert_eq!(cti("event=hangup&direction=out&call_id=1234567890-2&cause=normalClearing&from=4930600000000&to=4912347114711").await, ok);
    assert_eq!(bench.verdict("1234567890-2").await.0, "answered");

    // Inbound I: answered, hung up; a late answer after the hangup is ignored.
    assert_eq!(cti("event=newCall&direction=in&to=4930600000000&from=4912347114711&call_id=1234567890-3&user=user+1").await, ok);
    assert_eq!(
        cti("event=answer&direction=in&call_id=1234567890-3&to=4930600000000&from=4912347114711")
            .await,
        ok
    );
    assert_eq!(cti("event=hangup&direction=in&call_id=1234567890-3&cause=normalClearing&to=4930600000000&from=4912347114711").await, ok);
    let (status, text) = bench
        .send("cti", "", "application/json", r#"{"event":"answer","direction":"in","call_id":"1234567890-3","to":"4930600000000","from":"4912347114711"}"#)
        .await;
    assert_eq!((status, json_body(&text)), ok, "answer for a hung-up call");
    let (outcome, kind, _) = bench.verdict("1234567890-3").await;
    assert_eq!((outcome.as_str(), kind.as_str()), ("answered", "call"));

    // Inbound II: answered by the voicemail: not done in Zammad, a callback here.
    assert_eq!(cti("event=newCall&direction=in&to=4930600000000&from=4912347114711&call_id=1234567890-4&user%5B%5D=user+1&user%5B%5D=user+2").await, ok);
    assert_eq!(cti("event=answer&direction=in&call_id=1234567890-4&to=4930600000000&from=4912347114711&user=voicemail").await, ok);
    assert!(
        bench.call("1234567890-4").await["answered_at"].is_null(),
        "the voicemail is no answer"
    );
    assert_eq!(cti("event=hangup&direction=in&call_id=1234567890-4&cause=normalClearing&to=4930600000000&from=4912347114711").await, ok);
    let (outcome, kind, subject) = bench.verdict("1234567890-4").await;
    assert_eq!((outcome.as_str(), kind.as_str()), ("voicemail", "callback"));
    assert!(subject.contains("message vocal"), "{subject}");

    // Inbound III: nobody answered ("user 1,user 2" in one value).
    assert_eq!(cti("event=newCall&direction=in&to=4930600000000&from=4912347114711&call_id=1234567890-5&user=user+1%2Cuser+2").await, ok);
    assert_eq!(cti("event=hangup&direction=in&call_id=1234567890-5&cause=normalClearing&to=4930600000000&from=4912347114711").await, ok);
    let (outcome, kind, subject) = bench.verdict("1234567890-5").await;
    assert_eq!((outcome.as_str(), kind.as_str()), ("missed", "callback"));
    assert!(!subject.contains("message vocal"), "{subject}");

    // Inbound IV: another caller; an anonymous one with a queue.
    assert_eq!(cti("event=newCall&direction=in&to=4930600000000&from=49999992222222&call_id=1234567890-6&user=user+1%2Cuser+2").await, ok);
    assert_eq!(bench.call("1234567890-6").await["direction"], "inbound");
    assert_eq!(cti("event=newCall&direction=in&to=4930600000000&from=anonymous&call_id=1234567890-7&user=user+1%2Cuser+2&queue=some_queue_name").await, ok);
    let call = bench.call("1234567890-7").await;
    assert_eq!(call["caller_withheld"], true);
    assert_eq!(call["queue"], "some_queue_name");

    // "does queue param tests": queue and user; queue and no user.
    assert_eq!(cti("event=newCall&direction=in&to=4930600000000&from=anonymous&call_id=q-1&user=203&queue=some_queue_name").await, ok);
    assert_eq!(cti("event=newCall&direction=in&to=4930600000000&from=anonymous&call_id=q-2&user=&queue=some_queue_name").await, ok);
    assert_eq!(cti("event=hangup&call_id=q-1&cause=cancel").await, ok);
    assert_eq!(cti("event=hangup&call_id=q-2&cause=cancel").await, ok);
    let named = bench.ended_call("q-1").await;
    assert_eq!(
        (named["queue"].as_str(), named["rang"].clone()),
        (Some("some_queue_name"), json!(["203"]))
    );
    let nobody = bench.ended_call("q-2").await;
    assert_eq!(
        nobody["rang"],
        json!(["201", "202"]),
        "the queue's agents rang"
    );
    let callback = bench.ticket("q-2").await.unwrap();
    assert_eq!(
        (
            callback["kind"].as_str(),
            callback["queue"].as_str(),
            callback["assignee_group"].as_str()
        ),
        (
            Some("callback"),
            Some("some_queue_name"),
            Some("some_queue_name")
        )
    );

    // Forwarded before anyone answered: handled elsewhere, and where it went.
    assert_eq!(
        cti("event=newCall&direction=in&from=0612345678&to=202&call_id=fw-1").await,
        ok
    );
    assert_eq!(
        cti("event=hangup&call_id=fw-1&cause=forwarded&answeringNumber=0622222222").await,
        ok
    );
    let (outcome, kind, subject) = bench.verdict("fw-1").await;
    assert_eq!(
        (outcome.as_str(), kind.as_str()),
        ("forwarded", "call"),
        "not a callback"
    );
    assert!(subject.contains("renvoyé vers 0622222222"), "{subject}");
    assert_eq!(bench.call("fw-1").await["transfers"][0]["to"], "0622222222");
}

/// The XML answer's attribute `name`.
fn attribute<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!(" {name}=\""))? + name.len() + 3;
    xml[start..].split('"').next()
}

/// `sipgate_spec.rb`, replayed against `POST /api/v1/sipgate/{token}/{in|out}`.
#[tokio::test]
async fn sipgate_spec() {
    let bench = Bench::start("sipgate", CONFIG).await;
    let port = bench.port();
    let token = bench.token.clone();
    let url =
        |direction: &str| format!("http://127.0.0.1:{port}/api/v1/sipgate/{token}/{direction}");

    // "does token check"
    let (status, text) = post(port, "/api/v1/sipgate/not_existing_token/in", FORM, &[], "event=newCall&direction=in&from=4912347114711&to=4930600000000&callId=4991155921769858278-1&user%5B%5D=user+1&user%5B%5D=user+2").await.unwrap();
    assert_eq!(status, 401);
    assert!(
        text.contains("<Error>Invalid token, please contact your admin!</Error>"),
        "{text}"
    );

    // "does basic call": the answer names where sipgate sends answer and hangup.
    let (status, text) = bench.send("sipgate", "/in", FORM, "event=newCall&direction=in&from=4912347114711&to=4930600000000&callId=4991155921769858278-1&user%5B%5D=user+1&user%5B%5D=user+2").await;
    assert_eq!(status, 200);
    assert!(text.starts_with("<?xml"), "{text}");
    assert_eq!(attribute(&text, "onHangup"), Some(url("in").as_str()));
    assert_eq!(attribute(&text, "onAnswer"), Some(url("in").as_str()));
    // Blocked caller.
    let (status, text) = bench.send("sipgate", "/in", FORM, "event=newCall&direction=in&from=491715000000&to=4930600000000&callId=4991155921769858278-2&user%5B%5D=user+1&user%5B%5D=user+2").await;
    assert_eq!(status, 200);
    assert_eq!(attribute(&text, "onHangup"), Some(url("in").as_str()));
    assert!(text.contains("<Reject reason=\"busy\"/>"), "{text}");
    // Outbound caller ids.
    for (call, to, caller_id) in [
        ("8621106404543334274-3", "4912347114711", "4930777000000"),
        ("8621106404543334274-4", "491714000000", "41715880339000"),
        ("8621106404543334274-5", "4147110000000", "41715880339000"),
    ] {
        let body = format!("event=newCall&direction=out&from=4930600000000&to={to}&callId={call}&user%5B%5D=user+1");
        let (status, text) = bench.send("sipgate", "/out", FORM, &body).await;
        assert_eq!(status, 200);
        assert_eq!(
            attribute(&text, "callerId"),
            Some(caller_id),
            "{call}: {text}"
        );
        assert!(text.contains(&format!("<Number>{to}</Number>")), "{text}");
        assert_eq!(attribute(&text, "onAnswer"), Some(url("out").as_str()));
    }

    // "does log call", as sipgate sends it (form, `callId`, `user[]`).
    let send = |body: &'static str, direction: &'static str| {
        let bench = &bench;
        async move {
            bench
                .send("sipgate", &format!("/{direction}"), FORM, body)
                .await
                .0
        }
    };
    assert_eq!(send("event=newCall&direction=out&from=4930600000000&to=4912347114711&callId=1234567890-1&user%5B%5D=user+1", "out").await, 200);
    assert_eq!(
        send(
            "event=hangup&direction=out&callId=1234567890-1&cause=cancel",
            "out"
        )
        .await,
        200
    );
    assert_eq!(bench.verdict("1234567890-1").await.0, "missed");
    assert_eq!(send("event=newCall&direction=out&from=4930600000000&to=4912347114711&callId=1234567890-2&user%5B%5D=user+1", "out").await, 200);
    assert_eq!(
        send(
            "event=answer&direction=out&callId=1234567890-2&from=4930600000000&to=4912347114711",
            "out"
        )
        .await,
        200
    );
    assert_eq!(send("event=hangup&direction=out&callId=1234567890-2&cause=normalClearing&from=4930600000000&to=4912347114711", "out").await, 200);
    assert_eq!(bench.verdict("1234567890-2").await.0, "answered");
    assert_eq!(send("event=newCall&direction=in&to=4930600000000&from=4912347114711&callId=1234567890-3&user%5B%5D=user+1", "in").await, 200);
    assert_eq!(
        send(
            "event=answer&direction=in&callId=1234567890-3&to=4930600000000&from=4912347114711",
            "in"
        )
        .await,
        200
    );
    assert_eq!(send("event=hangup&direction=in&callId=1234567890-3&cause=normalClearing&to=4930600000000&from=4912347114711", "in").await, 200);
    assert_eq!(bench.verdict("1234567890-3").await.1, "call");
    assert_eq!(send("event=newCall&direction=in&to=4930600000000&from=4912347114711&callId=1234567890-4&user%5B%5D=user+1,user+2", "in").await, 200);
    assert_eq!(send("event=answer&direction=in&callId=1234567890-4&to=4930600000000&from=4912347114711&user=voicemail", "in").await, 200);
    assert_eq!(send("event=hangup&direction=in&callId=1234567890-4&cause=normalClearing&to=4930600000000&from=4912347114711", "in").await, 200);
    let (outcome, kind, subject) = bench.verdict("1234567890-4").await;
    assert_eq!((outcome.as_str(), kind.as_str()), ("voicemail", "callback"));
    assert!(subject.contains("message vocal"), "{subject}");
    assert_eq!(send("event=newCall&direction=in&to=4930600000000&from=4912347114711&callId=1234567890-5&user%5B%5D=user+1,user+2", "in").await, 200);
    assert_eq!(send("event=hangup&direction=in&callId=1234567890-5&cause=normalClearing&to=4930600000000&from=4912347114711", "in").await, 200);
    assert_eq!(bench.verdict("1234567890-5").await.1, "callback");
    assert_eq!(send("event=newCall&direction=in&to=4930600000000&from=49999992222222&callId=1234567890-6&user%5B%5D=user+1,user+2", "in").await, 200);
    assert!(bench.has_call("1234567890-6").await);

    // sipgate's own parameters: userId[] names the agent, answeringNumber and
    // userId say who answered, diversion is kept; a hangup "forwarded".
    assert_eq!(send("event=newCall&direction=in&from=4912347114711&to=4930600000000&callId=sg-7&user%5B%5D=Claire+Martin&userId%5B%5D=w0&fullUserId%5B%5D=1234567w0&diversion=4930600000001", "in").await, 200);
    assert_eq!(send("event=answer&direction=in&callId=sg-7&user=Claire+Martin&userId=w0&fullUserId=1234567w0&answeringNumber=4930600000000", "in").await, 200);
    assert_eq!(
        send(
            "event=hangup&direction=in&callId=sg-7&cause=normalClearing",
            "in"
        )
        .await,
        200
    );
    let call = bench.ended_call("sg-7").await;
    assert_eq!(
        call["answered_by"], "203",
        "the agent, not the number reached"
    );
    assert_eq!(
        (call["rang"].clone(), call["outcome"].as_str()),
        (json!(["203"]), Some("answered"))
    );
    assert_eq!(
        send(
            "event=newCall&direction=in&from=4912347114711&to=4930600000000&callId=sg-8",
            "in"
        )
        .await,
        200
    );
    assert_eq!(
        send(
            "event=hangup&callId=sg-8&cause=forwarded&diversion=491701234567",
            "in"
        )
        .await,
        200
    );
    assert_eq!(bench.verdict("sg-8").await.0, "forwarded");

    let log = bench.fiche.log_text();
    assert!(
        log.contains("/api/v1/sipgate/<token>/in"),
        "requests are logged"
    );
    assert!(!log.contains(&bench.token), "the token never is");

    // "alternative fqdn": the configured public URL wins over the Host.
    let config = format!("{CONFIG}\n");
    let config = config.replace(
        "[cti]\n",
        "[cti]\npublic_url = \"https://external.host.example.com/\"\n",
    );
    let other = Bench::start("sipgate", &config).await;
    let (status, text) = other.send("sipgate", "/in", FORM, "event=newCall&direction=in&from=4912347114711&to=4930600000000&callId=4991155921769858278-1&user%5B%5D=user+1&user%5B%5D=user+2").await;
    assert_eq!(status, 200);
    let expected = format!(
        "https://external.host.example.com/api/v1/sipgate/{}/in",
        other.token
    );
    assert_eq!(
        attribute(&text, "onHangup"),
        Some(expected.as_str()),
        "{text}"
    );
}

/// `placetel_spec.rb`, replayed against `POST /api/v1/placetel/{token}`.
#[tokio::test]
async fn placetel_spec() {
    let bench = Bench::start("placetel", CONFIG).await;
    let send = |body: &'static str| {
        let bench = &bench;
        async move { bench.send("placetel", "", FORM, body).await }
    };

    // "does token check"
    let (status, text) = post(
        bench.port(),
        "/api/v1/placetel/not_existing_token",
        FORM,
        &[],
        "event=IncomingCall&from=01114100300&to=030600000000&call_id=4991155921769858278-1",
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    assert!(
        text.contains("<Error>Invalid token, please contact your admin!</Error>"),
        "{text}"
    );

    // "does basic call"
    let (status, text) =
        send("event=IncomingCall&from=01114100300&to=030600000000&call_id=4991155921769858278-1")
            .await;
    assert_eq!(
        (status, text.lines().last()),
        (200, Some("<Response/>")),
        "{text}"
    );
    let (status, text) =
        send("event=IncomingCall&from=491715000000&to=030600000000&call_id=4991155921769858278-2")
            .await;
    assert_eq!(status, 200);
    assert!(
        text.contains("<Response><Reject reason=\"busy\"/></Response>"),
        "{text}"
    );
    for (call, to, caller_id) in [
        ("8621106404543334274-3", "01114100300", "4930777000000"),
        ("8621106404543334274-4", "491714000000", "41715880339000"),
        ("8621106404543334274-5", "4147110000000", "41715880339000"),
    ] {
        let body =
            format!("event=OutgoingCall&direction=out&from=030600000000&to={to}&call_id={call}");
        let (status, text) = bench.send("placetel", "", FORM, &body).await;
        assert_eq!(status, 200);
        assert!(
            text.contains(&format!(
                "<Dial callerId=\"{caller_id}\"><Number>{to}</Number></Dial>"
            )),
            "{call}: {text}"
        );
    }

    // "does log call"
    assert_eq!(send("event=OutgoingCall&direction=out&from=030600000000&to=01114100300&call_id=1234567890-1").await.0, 200);
    assert_eq!(
        send("event=HungUp&call_id=1234567890-1&type=missed")
            .await
            .0,
        200
    );
    let call = bench.ended_call("1234567890-1").await;
    assert_eq!(
        (
            call["direction"].as_str(),
            call["outcome"].as_str(),
            call["cause"].as_str()
        ),
        (Some("outbound"), Some("missed"), Some("cancel"))
    );
    assert_eq!(send("event=OutgoingCall&direction=out&from=030600000000&to=01114100300&call_id=1234567890-2").await.0, 200);
    assert_eq!(
        send("event=CallAccepted&call_id=1234567890-2&from=030600000000&to=01114100300")
            .await
            .0,
        200
    );
    assert_eq!(
        send("event=HungUp&call_id=1234567890-2&type=accepted&from=030600000000&to=01114100300")
            .await
            .0,
        200
    );
    let call = bench.ended_call("1234567890-2").await;
    assert_eq!(
        (call["outcome"].as_str(), call["cause"].as_str()),
        (Some("answered"), Some("normalClearing"))
    );
    assert_eq!(
        send("event=IncomingCall&to=030600000000&from=01114100300&call_id=1234567890-3")
            .await
            .0,
        200
    );
    assert_eq!(
        send("event=CallAccepted&call_id=1234567890-3&to=030600000000&from=01114100300")
            .await
            .0,
        200
    );
    assert_eq!(
        send("event=HungUp&call_id=1234567890-3&type=accepted&to=030600000000&from=01114100300")
            .await
            .0,
        200
    );
    assert_eq!(bench.verdict("1234567890-3").await.0, "answered");
    assert_eq!(
        send("event=IncomingCall&to=030600000000&from=01114100300&call_id=1234567890-4")
            .await
            .0,
        200
    );
    assert_eq!(send("event=CallAccepted&call_id=1234567890-4&to=030600000000&from=01114100300&user=voicemail").await.0, 200);
    assert_eq!(
        send("event=HungUp&call_id=1234567890-4&type=accepted&to=030600000000&from=01114100300")
            .await
            .0,
        200
    );
    let (outcome, kind, subject) = bench.verdict("1234567890-4").await;
    assert_eq!((outcome.as_str(), kind.as_str()), ("voicemail", "callback"));
    assert!(subject.contains("message vocal"), "{subject}");
    assert_eq!(
        send("event=IncomingCall&to=030600000000&from=01114100300&call_id=1234567890-5")
            .await
            .0,
        200
    );
    assert_eq!(
        send("event=HungUp&call_id=1234567890-5&type=accepted&to=030600000000&from=01114100300")
            .await
            .0,
        200
    );
    assert_eq!(bench.verdict("1234567890-5").await.1, "callback");
    assert_eq!(
        send("event=IncomingCall&to=030600000000&from=49999992222222&call_id=1234567890-6")
            .await
            .0,
        200
    );
    assert!(bench.has_call("1234567890-6").await);
    assert_eq!(
        send("event=IncomingCall&to=030600000000&from=anonymous&call_id=1234567890-7")
            .await
            .0,
        200
    );
    assert_eq!(bench.call("1234567890-7").await["caller_withheld"], true);
    // Placetel's own voicemail hang-up (`type=voicemail`).
    assert_eq!(
        send("event=IncomingCall&to=030600000000&from=0612345678&call_id=pt-vm")
            .await
            .0,
        200
    );
    assert_eq!(
        send("event=HungUp&call_id=pt-vm&type=voicemail").await.0,
        200
    );
    assert_eq!(
        bench.verdict("pt-vm").await,
        (
            "voicemail".to_owned(),
            "callback".to_owned(),
            bench.ticket("pt-vm").await.unwrap()["subject"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        )
    );

    // "does log call with peer": the SIP user names the agent.
    assert_eq!(send("event=OutgoingCall&direction=out&to=099999222222&call_id=peer-2&from=777008478072@example.com").await.0, 200);
    let call = bench.call("peer-2").await;
    assert_eq!(
        (call["direction"].as_str(), call["caller_number"].as_str()),
        (Some("outbound"), Some("204"))
    );
    assert_eq!(send("event=IncomingCall&direction=in&to=030600000000&from=012345&call_id=peer-3&peer=777008478072@example.com").await.0, 200);
    assert_eq!(
        send("event=CallAccepted&call_id=peer-3&peer=777008478072@example.com")
            .await
            .0,
        200
    );
    assert_eq!(
        send("event=HungUp&call_id=peer-3&type=accepted").await.0,
        200
    );
    let call = bench.ended_call("peer-3").await;
    assert_eq!(
        (call["rang"].clone(), call["answered_by"].as_str()),
        (json!(["204"]), Some("204"))
    );

    // An event Placetel's driver does not know: refused, in XML.
    let (status, text) = send("event=Ringing&call_id=x").await;
    assert_eq!(status, 422);
    assert!(text.contains("<Error>unknown event"), "{text}");
}

/// An Aircall webhook body (the shape of developer.aircall.io's call events).
fn aircall(event: &str, token: &str, data: Value) -> String {
    json!({"resource": "call", "event": event, "timestamp": 1_700_000_000, "token": token, "data": data}).to_string()
}

fn aircall_call(id: u64, direction: &str, extra: Value) -> Value {
    let mut call = json!({
        "id": id, "direction": direction, "status": "initial",
        "raw_digits": "+33 6 12 34 56 78",
        "number": {"id": 58108, "digits": "+33 4 22 20 20 20", "name": "Support"},
        "missed_call_reason": null, "voicemail": null, "user": null
    });
    if let (Some(call), Value::Object(extra)) = (call.as_object_mut(), extra) {
        call.extend(extra);
    }
    call
}

/// Aircall sequences: answered, a ring group missed, a voicemail, a transfer,
/// an outbound call; the body's token checked, a forged one refused.
#[tokio::test]
async fn aircall_sequences() {
    let bench = Bench::start("aircall", CONFIG).await;
    let send = |event: &'static str, data: Value| {
        let bench = &bench;
        async move {
            let (status, text) = bench
                .send(
                    "aircall",
                    "",
                    "application/json",
                    &aircall(event, AIRCALL_TOKEN, data),
                )
                .await;
            assert_eq!(
                (status, json_body(&text)),
                (200, json!({})),
                "{event}: {}",
                bench.fiche.log_tail(20)
            );
        }
    };
    let claire = json!({"user": {"id": 216119, "email": "someone@example.com", "name": "Claire"}});
    let bob = json!({"user": {"id": 99, "email": "claire@example.com"}});

    // A forged event (wrong token) is refused and makes nothing.
    let (status, _) = bench
        .send(
            "aircall",
            "",
            "application/json",
            &aircall(
                "call.created",
                "forged",
                aircall_call(1, "inbound", json!({})),
            ),
        )
        .await;
    assert_eq!(status, 401);
    let unsigned = json!({"resource": "call", "event": "call.created", "data": aircall_call(1, "inbound", json!({}))}).to_string();
    assert_eq!(
        bench
            .send("aircall", "", "application/json", &unsigned)
            .await
            .0,
        401
    );
    assert!(!bench.has_call("1").await);

    // Inbound, answered.
    send("call.created", aircall_call(1, "inbound", json!({}))).await;
    send(
        "call.ringing_on_agent",
        aircall_call(1, "inbound", claire.clone()),
    )
    .await;
    send("call.answered", aircall_call(1, "inbound", claire.clone())).await;
    send("call.hungup", aircall_call(1, "inbound", claire.clone())).await;
    send("call.ended", aircall_call(1, "inbound", claire.clone())).await;
    let call = bench.ended_call("1").await;
    assert_eq!(
        (
            call["outcome"].as_str(),
            call["answered_by"].as_str(),
            call["queue"].as_str()
        ),
        (Some("answered"), Some("201"), Some("Support"))
    );
    assert_eq!(call["caller_number"], "+33612345678");
    assert_eq!(bench.ticket("1").await.unwrap()["kind"], "call");

    // Missed, to a ring group (two agents rang, one declined).
    send("call.created", aircall_call(2, "inbound", json!({}))).await;
    send(
        "call.ringing_on_agent",
        aircall_call(2, "inbound", claire.clone()),
    )
    .await;
    send(
        "call.ringing_on_agent",
        aircall_call(2, "inbound", bob.clone()),
    )
    .await;
    send(
        "call.agent_declined",
        aircall_call(2, "inbound", bob.clone()),
    )
    .await;
    send("call.hungup", aircall_call(2, "inbound", json!({}))).await;
    send(
        "call.ended",
        aircall_call(
            2,
            "inbound",
            json!({"missed_call_reason": "agents_did_not_answer"}),
        ),
    )
    .await;
    let call = bench.ended_call("2").await;
    assert_eq!(
        (
            call["outcome"].as_str(),
            call["cause"].as_str(),
            call["rang"].clone()
        ),
        (
            Some("missed"),
            Some("agents_did_not_answer"),
            json!(["201", "202"])
        )
    );
    let callback = bench.ticket("2").await.unwrap();
    assert_eq!(
        (
            callback["kind"].as_str(),
            callback["assignee_group"].as_str()
        ),
        (Some("callback"), Some("Support"))
    );

    // A voicemail: the caller hangs up unanswered, the message is left.
    send(
        "call.created",
        aircall_call(3, "inbound", json!({"raw_digits": "+33 6 99 99 99 99"})),
    )
    .await;
    send(
        "call.ringing_on_agent",
        aircall_call(3, "inbound", claire.clone()),
    )
    .await;
    send("call.hungup", aircall_call(3, "inbound", json!({}))).await;
    send(
        "call.voicemail_left",
        aircall_call(
            3,
            "inbound",
            json!({"voicemail": "https://example.com/vm.mp3"}),
        ),
    )
    .await;
    send(
        "call.ended",
        aircall_call(
            3,
            "inbound",
            json!({"voicemail": "https://example.com/vm.mp3"}),
        ),
    )
    .await;
    let (outcome, kind, subject) = bench.verdict("3").await;
    assert_eq!((outcome.as_str(), kind.as_str()), ("voicemail", "callback"));
    assert!(subject.contains("message vocal"), "{subject}");

    // A transfer from Claire (201) to 202.
    send(
        "call.created",
        aircall_call(4, "inbound", json!({"raw_digits": "+33 6 11 11 11 11"})),
    )
    .await;
    send(
        "call.ringing_on_agent",
        aircall_call(4, "inbound", claire.clone()),
    )
    .await;
    send("call.answered", aircall_call(4, "inbound", claire.clone())).await;
    send("call.transferred", aircall_call(4, "inbound", json!({"transferred_by": {"id": 216119}, "transferred_to": {"id": 99, "email": "claire@example.com"}}))).await;
    send("call.hungup", aircall_call(4, "inbound", bob.clone())).await;
    let call = bench.ended_call("4").await;
    assert_eq!(call["transfers"][0]["by"], "201");
    assert_eq!(call["transfers"][0]["to"], "202");

    // Outbound, placed by Claire.
    let mut placed = claire.clone();
    placed["raw_digits"] = json!("+33 6 55 55 55 55");
    send("call.created", aircall_call(5, "outbound", placed.clone())).await;
    send("call.answered", aircall_call(5, "outbound", placed.clone())).await;
    send("call.hungup", aircall_call(5, "outbound", placed)).await;
    let call = bench.ended_call("5").await;
    assert_eq!(
        (
            call["direction"].as_str(),
            call["caller_number"].as_str(),
            call["callee_number"].as_str()
        ),
        (Some("outbound"), Some("201"), Some("+33655555555"))
    );
    assert_eq!(bench.ticket("5").await.unwrap()["kind"], "call");

    // Events Fiche does not follow, and events of calls it never saw begin, are acknowledged.
    send("call.tagged", aircall_call(5, "outbound", json!({}))).await;
    send("call.answered", aircall_call(777, "inbound", claire)).await;
    assert!(!bench.has_call("777").await);
    let log = bench.fiche.log_text();
    assert!(
        !log.contains(AIRCALL_TOKEN) && !log.contains(&bench.token),
        "neither Fiche's token nor Aircall's is logged"
    );
}

/// Ringover's signature header: a JWT signed HS512 with `key`.
fn ringover_signature(key: &str) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = engine.encode(r#"{"alg":"HS512","typ":"JWT"}"#);
    let payload = engine.encode(r#"{"foo":"bar"}"#);
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{head}.{payload}").as_bytes());
    format!(
        "{head}.{payload}.{}",
        engine.encode(mac.finalize().into_bytes())
    )
}

fn ringover(
    event: &str,
    call_id: u64,
    direction: &str,
    user: Option<(u64, &str)>,
    extra: Value,
) -> String {
    // One customer per call, so that no callback merges into another's.
    let outside = format!("336010203{call_id:02}");
    let mut data = json!({
        "id": "57622f20-a020-4f9e-814c-62a6123412fa", "call_id": call_id, "channel_id": 1,
        "start_time": 1_554_823_493.76, "direction": direction,
        "from_number": if direction == "inbound" { outside.as_str() } else { "33101020304" },
        "to_number": if direction == "inbound" { "33101020304" } else { outside.as_str() },
        "is_internal": false, "is_anonymous": false, "is_ivr": true,
        "ivr_data": {"number": "33101020304", "scenario_name": "Opened", "ivr_name": "Standard"},
        "status": event
    });
    if let Some((id, email)) = user {
        data["user_id"] = json!(id);
        data["user"] = json!({"user_id": id, "firstname": "A", "lastname": "B", "email": email});
    }
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    json!({"event": event, "resource": "call", "timestamp": 1_554_823_493.76, "data": data, "attempt": 1}).to_string()
}

/// Ringover sequences, each request signed; a forged signature refused.
#[tokio::test]
async fn ringover_sequences() {
    let bench = Bench::start("ringover", CONFIG).await;
    let signature = ringover_signature(RINGOVER_KEY);
    let send = |body: String| {
        let bench = &bench;
        let signature = signature.clone();
        async move {
            let (status, text) = bench
                .send_with(
                    "ringover",
                    "",
                    "application/json",
                    &[("X-Ringover-Webhook-Signature", signature.as_str())],
                    &body,
                )
                .await;
            assert_eq!(
                (status, json_body(&text)),
                (200, json!({})),
                "{body}: {}",
                bench.fiche.log_tail(20)
            );
        }
    };
    let jean = Some((123_456_789, "jean.dupont@example.com"));
    let claire = Some((5, "claire@example.com"));

    // Forged: signed with another key, or not signed.
    let forged = ringover_signature("not-the-key");
    let body = ringover("ringing", 1, "inbound", jean, json!({}));
    let (status, _) = bench
        .send_with(
            "ringover",
            "",
            "application/json",
            &[("X-Ringover-Webhook-Signature", forged.as_str())],
            &body,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        bench
            .send("ringover", "", "application/json", &body)
            .await
            .0,
        401
    );
    assert!(!bench.has_call("1").await);

    // Inbound, answered by Jean (203).
    send(ringover("ringing", 1, "inbound", jean, json!({}))).await;
    send(ringover("answered", 1, "inbound", jean, json!({}))).await;
    send(ringover(
        "hangup",
        1,
        "inbound",
        jean,
        json!({"hangup_time": 1_554_823_542.76, "duration_in_seconds": 32}),
    ))
    .await;
    let call = bench.ended_call("1").await;
    assert_eq!(
        (
            call["outcome"].as_str(),
            call["answered_by"].as_str(),
            call["queue"].as_str()
        ),
        (Some("answered"), Some("203"), Some("Standard"))
    );
    assert_eq!(call["caller_number"], "+33601020301");

    // Missed, to a ring group: no voicemail news follows, missed after the wait.
    send(ringover("ringing", 2, "inbound", claire, json!({}))).await;
    send(ringover("ringing", 2, "inbound", jean, json!({}))).await;
    send(ringover(
        "missed",
        2,
        "inbound",
        None,
        json!({"reason": "NO_ANSWER"}),
    ))
    .await;
    let call = bench.ended_call("2").await;
    assert_eq!(
        (call["outcome"].as_str(), call["rang"].clone()),
        (Some("missed"), json!(["202", "203"]))
    );
    assert_eq!(bench.ticket("2").await.unwrap()["kind"], "callback");

    // A voicemail after the missed call.
    send(ringover("ringing", 3, "inbound", jean, json!({}))).await;
    send(ringover(
        "missed",
        3,
        "inbound",
        None,
        json!({"reason": "NO_ANSWER"}),
    ))
    .await;
    send(ringover(
        "voicemail",
        3,
        "inbound",
        None,
        json!({"hangup_time": 1_554_823_542.76}),
    ))
    .await;
    let (outcome, kind, subject) = bench.verdict("3").await;
    assert_eq!((outcome.as_str(), kind.as_str()), ("voicemail", "callback"));
    assert!(subject.contains("message vocal"), "{subject}");

    // A transfer: Claire answers, Jean takes the call over.
    send(ringover("ringing", 4, "inbound", claire, json!({}))).await;
    send(ringover("answered", 4, "inbound", claire, json!({}))).await;
    send(ringover("answered", 4, "inbound", jean, json!({}))).await;
    send(ringover("hangup", 4, "inbound", jean, json!({}))).await;
    let call = bench.ended_call("4").await;
    assert_eq!(
        (
            call["transfers"][0]["by"].as_str(),
            call["transfers"][0]["to"].as_str()
        ),
        (Some("202"), Some("203"))
    );
    assert_eq!(
        (
            call["answered_by"].as_str(),
            call["agent_extension"].as_str()
        ),
        (Some("202"), Some("203"))
    );

    // Outbound, placed by Claire.
    send(ringover("ringing", 5, "outbound", claire, json!({}))).await;
    send(ringover("answered", 5, "outbound", claire, json!({}))).await;
    send(ringover("hangup", 5, "outbound", claire, json!({}))).await;
    let call = bench.ended_call("5").await;
    assert_eq!(
        (
            call["direction"].as_str(),
            call["caller_number"].as_str(),
            call["outcome"].as_str()
        ),
        (Some("outbound"), Some("202"), Some("answered"))
    );

    // Events Fiche does not follow are acknowledged.
    send(json!({"event": "tags_updated", "resource": "aftercall", "timestamp": 0, "data": {"call_id": 5, "tags": ["x"]}}).to_string()).await;
    let log = bench.fiche.log_text();
    assert!(!log.contains(RINGOVER_KEY) && !log.contains(&signature));
}
