//! The CTI webhook end to end: Zammad-style POSTs to the real `fiche` binary,
//! the replies, the call events they produce (raw event stream and
//! `/api/calls/live`), calls that span a Fiche restart, and outbound webhooks
//! (call events and ticket changes) delivered to receivers started here, over
//! HTTP and over HTTPS with a private CA — including across a receiver outage
//! and a Fiche restart. Acknowledged calls survive `kill -9`, on SQLite and on
//! PostgreSQL.
//!
//! Needs PostgreSQL at
//! `FICHE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! for the PostgreSQL crash test.

use anyhow::{bail, Context};
use fiche_e2e::events::lines;
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::pg::PgSchema;
use fiche_e2e::testbed::fiche_binary;
use fiche_e2e::webhook_receiver::{self, Received, TestPki};
use fiche_pbx::{CallId, Source};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use fiche_e2e::auth::ADMIN_PASSWORD;

/// `fiche cti token add NAME` on the scratch database: the printed token.
fn add_token(scratch: &Scratch, name: &str) -> anyhow::Result<String> {
    add_token_on(&database_url(scratch), name)
}

/// `fiche cti token add NAME` on the database at `url`: the printed token.
fn add_token_on(url: &str, name: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new(fiche_binary()?)
        .args(["cti", "token", "add", name])
        .env("FICHE_DATABASE_URL", url)
        .env_remove("FICHE_CONFIG")
        .output()?;
    if !output.status.success() {
        bail!(
            "token add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let token = String::from_utf8(output.stdout)?.trim().to_owned();
    assert_eq!(token.len(), 64, "a 256-bit token in hex: {token:?}");
    Ok(token)
}

fn cti(scratch: &Scratch, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(fiche_binary()?)
        .arg("cti")
        .args(args)
        .env("FICHE_DATABASE_URL", database_url(scratch))
        .env_remove("FICHE_CONFIG")
        .output()?;
    if !output.status.success() {
        bail!(
            "fiche cti {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn database_url(scratch: &Scratch) -> String {
    format!("sqlite://{}/fiche.db", scratch.path().display())
}

/// One request with exactly these headers and body: status and body.
async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    fiche_e2e::http::send(port, method, path, headers, body).await
}

/// A session token when the server has logins, `None` while every route is open.
async fn login(port: u16) -> anyhow::Result<Option<String>> {
    let body = json!({ "login": "admin", "password": ADMIN_PASSWORD }).to_string();
    let (status, answer) = request(
        port,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await?;
    match status {
        200 => {
            let value: Value = serde_json::from_str(&answer)?;
            Ok(Some(
                value["token"].as_str().context("no token")?.to_owned(),
            ))
        }
        404 | 405 => Ok(None),
        other => bail!("login answered {other}: {answer}"),
    }
}

struct Client {
    port: u16,
    session: Option<String>,
}

impl Client {
    async fn post_json(&self, token: &str, body: Value) -> (u16, Value) {
        self.post(token, "application/json", &body.to_string())
            .await
    }

    async fn post_form(&self, token: &str, body: &str) -> (u16, Value) {
        self.post(token, "application/x-www-form-urlencoded", body)
            .await
    }

    async fn post(&self, token: &str, content_type: &str, body: &str) -> (u16, Value) {
        let path = format!("/api/v1/cti/{token}");
        let (status, text) = request(
            self.port,
            "POST",
            &path,
            &[("Content-Type", content_type)],
            body,
        )
        .await
        .unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn live_calls(&self) -> Vec<Value> {
        let auth = self.session.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (status, body) = request(self.port, "GET", "/api/calls/live", &headers, "")
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap()
    }

    /// The raw call-event stream: `/ws/events` with a session, `/ws` before logins existed.
    async fn events(&self) -> anyhow::Result<mpsc::UnboundedReceiver<Value>> {
        let path = if self.session.is_some() {
            "/ws/events"
        } else {
            "/ws"
        };
        let mut request = format!("ws://127.0.0.1:{}{path}", self.port).into_client_request()?;
        if let Some(token) = &self.session {
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse()?);
        }
        let (socket, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(request),
        )
        .await??;
        let (mut outgoing, mut incoming) = socket.split();
        // The pong proves the server's socket task (and its subscription) runs.
        outgoing
            .send(Message::Ping(b"ready".to_vec().into()))
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ready = false;
        while !ready {
            match tokio::time::timeout(Duration::from_secs(5), incoming.next()).await? {
                Some(Ok(Message::Pong(_))) => ready = true,
                Some(Ok(Message::Text(text))) => drop(tx.send(serde_json::from_str(&text)?)),
                Some(Ok(_)) => {}
                other => bail!("event stream closed before it was ready: {other:?}"),
            }
        }
        tokio::spawn(async move {
            let _keep = outgoing;
            while let Some(Ok(message)) = incoming.next().await {
                if let Message::Text(text) = message {
                    if let Ok(value) = serde_json::from_str(&text) {
                        drop(tx.send(value));
                    }
                }
            }
        });
        Ok(rx)
    }
}

async fn start(scratch: &Scratch, name: &str, toml: &str) -> FicheProcess {
    FicheProcess::start(scratch, name, &AmiSetup::Toml(toml.to_owned()), &[])
        .await
        .unwrap()
}

/// Events received until none came for `quiet`.
async fn drain(events: &mut mpsc::UnboundedReceiver<Value>, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(quiet, events.recv()).await {
        out.push(event);
    }
    out
}

fn call_id(pbx: &str, call: &str) -> String {
    CallId::from_source_key(Source::Cti, &format!("{pbx}/{call}")).to_string()
}

/// The golden lines of `call`'s events (every one from the CTI source).
fn story(events: &[Value], call: &str) -> Vec<String> {
    let of_call: Vec<&Value> = events.iter().filter(|e| e["call_id"] == call).collect();
    for event in &of_call {
        assert_eq!(event["source"], "cti", "{event}");
    }
    lines(of_call)
}

const CONFIG: &str =
    "[calls]\nended_linger_secs = 600\n\n[cti]\nblocked_numbers = [\"0899123456\"]\n";

#[tokio::test]
async fn cti_requests_become_call_events_and_zammad_replies() {
    let scratch = Scratch::create().unwrap();
    let token = add_token(&scratch, "pbx1").unwrap();
    let revoked = add_token(&scratch, "old-pbx").unwrap();
    assert!(cti(&scratch, &["token", "revoke", "old-pbx"])
        .unwrap()
        .contains("old-pbx"));
    let list = cti(&scratch, &["token", "list"]).unwrap();
    assert!(
        list.contains("pbx1\tactive") && list.contains("old-pbx\trevoked"),
        "{list}"
    );
    assert!(
        !list.contains(&token),
        "tokens are not stored, so never listed"
    );

    let fiche = start(&scratch, "fiche", CONFIG).await;
    let port = fiche.http_port();
    let client = Client {
        port,
        session: login(port).await.unwrap(),
    };
    let mut events = client.events().await.unwrap();
    let ok = (200, json!({}));

    // Inbound, answered: JSON, national number read as French.
    let new_a = json!({"event":"newCall","direction":"in","from":"0612345678","to":"201","callId":"A1","user":["Claire"]});
    assert_eq!(client.post_json(&token, new_a.clone()).await, ok);
    assert_eq!(
        client.post_json(&token, new_a).await,
        ok,
        "a duplicate newCall is accepted and ignored"
    );
    assert_eq!(
        client
            .post_form(
                &token,
                "event=answer&callId=A1&answeringNumber=201&user=Claire"
            )
            .await,
        ok
    );
    assert_eq!(
        client
            .post_form(&token, "event=hangup&call_id=A1&cause=normalClearing")
            .await,
        ok
    );

    // Missed: a ring group, the caller gives up.
    assert_eq!(
        client.post_form(&token, "event=newCall&direction=in&from=%2B33698765432&to=0140000000&user%5B%5D=201&user%5B%5D=202&callId=B1").await,
        ok
    );
    assert_eq!(
        client
            .post_form(&token, "event=hangup&callId=B1&cause=cancel")
            .await,
        ok
    );

    // Outbound, answered by the far end.
    assert_eq!(client.post_json(&token, json!({"event":"newCall","direction":"out","from":"201","to":"01 40 00 00 01","callId":"C1"})).await, ok);
    assert_eq!(
        client
            .post_json(&token, json!({"event":"answer","callId":"C1"}))
            .await,
        ok
    );
    assert_eq!(
        client
            .post_json(
                &token,
                json!({"event":"hangup","callId":"C1","cause":"normalClearing"})
            )
            .await,
        ok
    );

    // Forwarded before anyone answered.
    assert_eq!(
        client
            .post_form(
                &token,
                "event=newCall&direction=in&from=0611111111&to=202&callId=D1"
            )
            .await,
        ok
    );
    assert_eq!(
        client
            .post_form(
                &token,
                "event=hangup&callId=D1&cause=forwarded&answeringNumber=0622222222"
            )
            .await,
        ok
    );

    // Blocked caller, written differently from the configuration.
    assert_eq!(
        client.post_json(&token, json!({"event":"newCall","direction":"in","from":"+33 8 99 12 34 56","to":"201","callId":"E1"})).await,
        (200, json!({"action":"reject","reason":"busy"}))
    );
    assert_eq!(
        client
            .post_form(&token, "event=hangup&callId=E1&cause=blocked")
            .await,
        ok
    );

    // Refusals.
    let invalid = (
        401,
        json!({"error":"Invalid token, please contact your admin!"}),
    );
    assert_eq!(
        client
            .post_form(
                "0".repeat(64).as_str(),
                "event=newCall&direction=in&from=0612345678&to=201&callId=X"
            )
            .await,
        invalid
    );
    assert_eq!(
        client
            .post_form(
                &revoked,
                "event=newCall&direction=in&from=0612345678&to=201&callId=X"
            )
            .await,
        invalid
    );
    let (status, body) = client
        .post(&token, "application/json", "{\"event\": \"newCall\",")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
    let (status, _) = client.post(&token, "application/json", "[1,2]").await;
    assert_eq!(status, 400);
    let (status, body) = client.post_form(&token, "event=transfer&callId=A1").await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("transfer"),
        "{body}"
    );
    let (status, body) = client
        .post_form(
            &token,
            "event=newCall&direction=sideways&from=0612345678&to=201&callId=F1",
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("direction"),
        "{body}"
    );
    let (status, body) = client.post_form(&token, "event=answer&callId=nobody").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("nobody"), "{body}");

    let seen = drain(&mut events, Duration::from_millis(1500)).await;
    assert_eq!(
        story(&seen, &call_id("pbx1", "A1")),
        [
            "#1 call_started inbound caller=+33612345678 callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: normalClearing",
        ]
    );
    assert_eq!(
        story(&seen, &call_id("pbx1", "B1")),
        [
            "#1 call_started inbound caller=+33698765432 callee=+33140000000",
            "#1 ringing 201",
            "#1 ringing 202",
            "#1 ended missed: cancel",
        ]
    );
    assert_eq!(
        story(&seen, &call_id("pbx1", "C1")),
        [
            "#1 call_started outbound caller=201 callee=+33140000001",
            "#1 answered -",
            "#1 ended answered: normalClearing",
        ]
    );
    assert_eq!(
        story(&seen, &call_id("pbx1", "D1")),
        [
            "#1 call_started inbound caller=+33611111111 callee=202",
            "#1 ringing 202",
            "#1 transferred 0622222222 blind",
            "#1 ended forwarded: forwarded",
        ]
    );
    assert!(
        story(&seen, &call_id("pbx1", "E1")).is_empty(),
        "a blocked caller makes no call"
    );
    assert_eq!(seen.len(), 4 + 4 + 3 + 4, "nothing else: {seen:#?}");

    // The live table (what the board shows) agrees.
    let live = client.live_calls().await;
    let by_id: HashMap<String, &Value> = live
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_owned(), c))
        .collect();
    let a = by_id[&call_id("pbx1", "A1")];
    assert_eq!(
        (
            a["source"].as_str(),
            a["outcome"].as_str(),
            a["agent_extension"].as_str()
        ),
        (Some("cti"), Some("answered"), Some("201"))
    );
    assert_eq!(by_id[&call_id("pbx1", "B1")]["outcome"], "missed");
    assert_eq!(by_id[&call_id("pbx1", "C1")]["direction"], "outbound");
    assert_eq!(
        by_id[&call_id("pbx1", "D1")]["transferred_to"],
        json!(["0622222222"])
    );

    let log = fiche.log_text();
    assert!(
        !log.contains(&token) && !log.contains(&revoked),
        "a token reached the log"
    );
    assert!(
        log.contains("blocked caller rejected"),
        "the block is logged"
    );
    // The access log has a line per CTI request, the token replaced.
    assert!(
        log.lines()
            .any(|l| l.contains("fiche::access") && l.contains("/api/v1/cti/<token>")),
        "CTI requests are in the access log:\n{log}"
    );
}

async fn receiver(port: u16) -> (u16, mpsc::UnboundedReceiver<Received>, JoinHandle<()>) {
    let receiver = webhook_receiver::plain(port).await.unwrap();
    (receiver.port, receiver.requests, receiver.task)
}

fn verify(secret: &str, received: &Received) {
    received.verify(secret);
}

/// Deliveries until `count` distinct ones (by X-Fiche-Delivery per path) arrived.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    count: usize,
    limit: Duration,
) -> Vec<Received> {
    let mut out: Vec<Received> = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < count {
        let Ok(Some(r)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!("only {} of {count} deliveries arrived: {out:#?}", out.len());
        };
        let key = (r.path.clone(), r.headers.get("x-fiche-delivery").cloned());
        if !out
            .iter()
            .any(|o| (o.path.clone(), o.headers.get("x-fiche-delivery").cloned()) == key)
        {
            out.push(r);
        }
    }
    out
}

/// Distinct deliveries (by X-Fiche-Delivery per path), in arrival order, until
/// `done` holds for them.
async fn collect_until(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    limit: Duration,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let mut out: Vec<Received> = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&out) {
        let Ok(Some(r)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!("the expected deliveries did not all arrive: {out:#?}");
        };
        let key = (r.path.clone(), r.headers.get("x-fiche-delivery").cloned());
        if !out
            .iter()
            .any(|o| (o.path.clone(), o.headers.get("x-fiche-delivery").cloned()) == key)
        {
            out.push(r);
        }
    }
    out
}

/// Per call, the golden lines of the JSON call-event deliveries to `/hook`, in arrival order.
fn json_stories(deliveries: &[Received]) -> HashMap<String, Vec<String>> {
    json_stories_at(deliveries, "/hook")
}

/// Per call, the golden lines of the JSON call-event deliveries to `path`, in arrival order.
fn json_stories_at(deliveries: &[Received], path: &str) -> HashMap<String, Vec<String>> {
    let mut events: HashMap<String, Vec<Value>> = HashMap::new();
    for d in deliveries.iter().filter(|d| d.path == path) {
        let value: Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(value["schema"], "fiche.webhook.v1");
        if value["kind"] == "ticket_changed" {
            continue;
        }
        assert_eq!(
            d.headers.get("x-fiche-event").map(String::as_str),
            value["event"]["type"].as_str()
        );
        events
            .entry(value["event"]["call_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(value["event"].clone());
    }
    events
        .into_iter()
        .map(|(call, events)| (call, lines(&events)))
        .collect()
}

#[tokio::test]
async fn webhooks_survive_a_receiver_outage_and_a_restart() {
    let scratch = Scratch::create().unwrap();
    let token = add_token(&scratch, "pbx1").unwrap();
    let (port, mut rx, task) = receiver(0).await;
    let config = format!(
        "[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"s3cret\"\nmax_backoff_secs = 1\n\
         events = [\"call_started\", \"ringing\", \"answered\", \"ended\"]\n\n\
         [[webhooks]]\nname = \"zammad\"\nkind = \"zammad\"\nurl = \"http://127.0.0.1:{port}/zammad\"\nmax_backoff_secs = 1\n"
    );
    let fiche = start(&scratch, "fiche", &config).await;
    let client = Client {
        port: fiche.http_port(),
        session: None,
    };
    let ok = (200, json!({}));

    // Receiver up: one answered call reaches both targets, signed, in order.
    for body in [
        "event=newCall&direction=in&from=0612345678&to=201&callId=X",
        "event=answer&callId=X&answeringNumber=201",
        "event=hangup&callId=X&cause=normalClearing",
    ] {
        assert_eq!(client.post_form(&token, body).await, ok);
    }
    let first = collect(&mut rx, 4 + 3, Duration::from_secs(20)).await;
    for d in first.iter().filter(|d| d.path == "/hook") {
        verify("s3cret", d);
    }
    let x = call_id("pbx1", "X");
    assert_eq!(
        json_stories(&first)[&x],
        [
            "#1 call_started inbound caller=+33612345678 callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: normalClearing",
        ]
    );
    let zammad: Vec<&Received> = first.iter().filter(|d| d.path == "/zammad").collect();
    assert_eq!(zammad.len(), 3);
    assert!(
        zammad[0]
            .body
            .starts_with("event=newCall&from=%2B33612345678&to=201&direction=in&callId="),
        "{}",
        zammad[0].body
    );
    assert!(
        zammad[1].body.starts_with("event=answer&")
            && zammad[1].body.ends_with("answeringNumber=201")
    );
    assert!(
        zammad[2].body.starts_with("event=hangup&")
            && zammad[2].body.ends_with("cause=normalClearing")
    );
    assert!(zammad
        .iter()
        .all(|z| z.headers.get("content-type").map(String::as_str)
            == Some("application/x-www-form-urlencoded")));

    // Receiver down: two interleaved calls wait in the outbox, through a crash of Fiche.
    task.abort();
    drop(task.await);
    for body in [
        "event=newCall&direction=in&from=0611111111&to=201&callId=Y",
        "event=newCall&direction=in&from=0622222222&to=202&callId=Z",
        "event=answer&callId=Y&answeringNumber=201",
        "event=hangup&callId=Z&cause=cancel",
        "event=hangup&callId=Y&cause=normalClearing",
    ] {
        assert_eq!(client.post_form(&token, body).await, ok);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fiche.log_text().contains("webhook delivery failed"),
        "deliveries were attempted and failed"
    );
    fiche.kill().await.unwrap();
    let fiche = start(&scratch, "fiche-restarted", &config).await;
    let (_, mut rx, _task) = receiver(port).await;
    // Y: started, ringing, answered, ended; Z: started, ringing, ended — to each target
    // (Zammad: newCall, answer, hangup for Y; newCall, hangup for Z).
    let second = collect(&mut rx, 7 + 5, Duration::from_secs(30)).await;
    for d in second.iter().filter(|d| d.path == "/hook") {
        verify("s3cret", d);
    }
    let stories = json_stories(&second);
    assert_eq!(
        stories[&call_id("pbx1", "Y")],
        [
            "#1 call_started inbound caller=+33611111111 callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: normalClearing",
        ]
    );
    assert_eq!(
        stories[&call_id("pbx1", "Z")],
        [
            "#1 call_started inbound caller=+33622222222 callee=202",
            "#1 ringing 202",
            "#1 ended missed: cancel",
        ]
    );
    let zammad: Vec<String> = second
        .iter()
        .filter(|d| d.path == "/zammad")
        .map(|d| d.body.split('&').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        zammad,
        [
            "event=newCall",
            "event=newCall",
            "event=answer",
            "event=hangup",
            "event=hangup"
        ]
    );
    drop(fiche);
}

/// The tickets of the `ticket_changed` deliveries to `path`, in arrival order.
fn ticket_changes(deliveries: &[Received], path: &str) -> Vec<Value> {
    deliveries
        .iter()
        .filter(|d| d.path == path)
        .filter_map(|d| {
            let value: Value = serde_json::from_str(&d.body).unwrap();
            (value["kind"] == "ticket_changed").then(|| {
                assert_eq!(value["schema"], "fiche.webhook.v1");
                assert_eq!(
                    d.headers.get("x-fiche-event").map(String::as_str),
                    Some("ticket_changed")
                );
                value["ticket"].clone()
            })
        })
        .collect()
}

/// The `event` parameter of each Zammad delivery, in arrival order.
fn zammad_events(deliveries: &[Received]) -> Vec<String> {
    deliveries
        .iter()
        .filter(|d| d.path == "/zammad")
        .map(|d| d.body.split('&').next().unwrap_or("").to_owned())
        .collect()
}

fn webhooks(port: u16) -> String {
    format!(
        "[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"s3cret\"\nmax_backoff_secs = 1\n\n\
         [[webhooks]]\nname = \"zammad\"\nkind = \"zammad\"\nurl = \"http://127.0.0.1:{port}/zammad\"\nmax_backoff_secs = 1\n\n\
         [[webhooks]]\nname = \"tickets-only\"\nurl = \"http://127.0.0.1:{port}/tickets\"\nevents = [\"ticket_changed\"]\nmax_backoff_secs = 1\n"
    )
}

#[tokio::test]
async fn ticket_changes_reach_json_targets_but_not_zammad() {
    let scratch = Scratch::create().unwrap();
    let token = add_token(&scratch, "pbx1").unwrap();
    let (port, mut rx, _task) = receiver(0).await;
    let fiche = start(&scratch, "fiche", &webhooks(port)).await;
    let client = Client {
        port: fiche.http_port(),
        session: login(fiche.http_port()).await.unwrap(),
    };
    let session = client
        .session
        .clone()
        .expect("the harness logs in as admin");
    let ok = (200, json!({}));

    // A missed call: a callback ticket ("à rappeler").
    for body in [
        "event=newCall&direction=in&from=0612345678&to=201&callId=M1",
        "event=hangup&callId=M1&cause=cancel",
    ] {
        assert_eq!(client.post_form(&token, body).await, ok);
    }
    // crm: call_started, ringing, ended, ticket_changed; zammad: newCall, hangup;
    // tickets-only: ticket_changed.
    let first = collect_until(&mut rx, Duration::from_secs(20), |got| {
        !ticket_changes(got, "/hook").is_empty()
            && !ticket_changes(got, "/tickets").is_empty()
            && zammad_events(got).len() == 2
    })
    .await;
    let m1 = call_id("pbx1", "M1");
    assert_eq!(
        json_stories(&first)[&m1],
        [
            "#1 call_started inbound caller=+33612345678 callee=201",
            "#1 ringing 201",
            "#1 ended missed: cancel",
        ]
    );
    for d in first.iter().filter(|d| d.path == "/hook") {
        d.verify("s3cret");
    }
    let created = ticket_changes(&first, "/hook");
    let ticket = &created[0];
    assert_eq!(
        (
            ticket["kind"].as_str(),
            ticket["status"].as_str(),
            ticket["call_id"].as_str()
        ),
        (Some("callback"), Some("open"), Some(m1.as_str()))
    );
    assert_eq!(
        ticket["created"], true,
        "the first delivery creates it: {ticket}"
    );
    assert_eq!(ticket_changes(&first, "/tickets")[0], *ticket);
    assert_eq!(zammad_events(&first), ["event=newCall", "event=hangup"]);
    let ticket_id = ticket["id"].as_i64().unwrap();
    let hook_order: Vec<&str> = first
        .iter()
        .filter(|d| d.path == "/hook")
        .map(|d| d.headers["x-fiche-event"].as_str())
        .collect();
    assert_eq!(
        hook_order[..4],
        ["call_started", "ringing", "ended", "ticket_changed"],
        "the ticket follows the call that made it"
    );

    // An agent closes it through the API.
    let auth = format!("Bearer {session}");
    let (status, body) = request(
        client.port,
        "PATCH",
        &format!("/api/tickets/{ticket_id}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", auth.as_str()),
        ],
        &json!({"status": "closed"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let closed = |got: &[Received], path: &str| {
        ticket_changes(got, path)
            .iter()
            .any(|t| t["id"] == ticket_id && t["status"] == "closed" && t["created"] == false)
    };
    let second = collect_until(&mut rx, Duration::from_secs(20), |got| {
        closed(got, "/hook") && closed(got, "/tickets")
    })
    .await;
    for d in second.iter().filter(|d| d.path == "/hook") {
        d.verify("s3cret");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late: Vec<Received> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(
        late.iter().all(|d| d.path != "/zammad"),
        "Zammad gets no ticket change: {late:#?}"
    );
}

#[tokio::test]
async fn cti_calls_started_before_a_restart_end_after_it() {
    let scratch = Scratch::create().unwrap();
    let token = add_token(&scratch, "pbx1").unwrap();
    let (port, mut rx, _task) = receiver(0).await;
    let config = format!("{CONFIG}\n{}", webhooks(port));
    let fiche = start(&scratch, "fiche", &config).await;
    let client = Client {
        port: fiche.http_port(),
        session: login(fiche.http_port()).await.unwrap(),
    };
    let ok = (200, json!({}));
    for body in [
        "event=newCall&direction=in&from=0612345678&to=201&callId=R1",
        "event=answer&callId=R1&answeringNumber=201",
        "event=newCall&direction=in&from=0698765432&to=202&callId=R2",
    ] {
        assert_eq!(client.post_form(&token, body).await, ok);
    }
    // crm: R1 started, ringing, answered, its ticket; R2 started, ringing.
    // zammad: newCall, answer, newCall. tickets-only: R1's ticket.
    let before = collect_until(&mut rx, Duration::from_secs(20), |got| {
        let stories = json_stories(got);
        stories.get(&call_id("pbx1", "R2")).map(Vec::len) == Some(2)
            && zammad_events(got).len() == 3
            && !ticket_changes(got, "/tickets").is_empty()
    })
    .await;
    assert_eq!(
        json_stories(&before)[&call_id("pbx1", "R1")],
        [
            "#1 call_started inbound caller=+33612345678 callee=201",
            "#1 ringing 201",
            "#1 answered 201",
        ]
    );
    let answered_ticket = &ticket_changes(&before, "/tickets")[0];
    assert_eq!(
        (
            answered_ticket["kind"].as_str(),
            &answered_ticket["created"]
        ),
        (Some("call"), &json!(true)),
        "the answer creates R1's ticket: {answered_ticket}"
    );
    drop(fiche);
    // Whatever else was queued before the stop (ticket updates) comes first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}

    let fiche = start(&scratch, "fiche-restarted", &config).await;
    let client = Client {
        port: fiche.http_port(),
        session: login(fiche.http_port()).await.unwrap(),
    };
    let mut events = client.events().await.unwrap();
    for body in [
        "event=hangup&callId=R2&cause=cancel",
        "event=hangup&callId=R1&cause=normalClearing",
    ] {
        assert_eq!(
            client.post_form(&token, body).await,
            ok,
            "a call started before the restart is known: {body}"
        );
    }
    assert_eq!(
        client
            .post_form(&token, "event=hangup&callId=R2&cause=cancel")
            .await,
        ok,
        "a repeated hangup is accepted and ignored"
    );
    let (status, _) = client
        .post_form(&token, "event=answer&callId=never-started")
        .await;
    assert_eq!(status, 404, "a call unknown to the log is still refused");

    let seen = drain(&mut events, Duration::from_millis(1500)).await;
    assert_eq!(
        story(&seen, &call_id("pbx1", "R2")),
        ["#1 ended missed: cancel"]
    );
    assert_eq!(
        story(&seen, &call_id("pbx1", "R1")),
        ["#1 ended answered: normalClearing"]
    );
    assert_eq!(seen.len(), 2, "nothing else: {seen:#?}");

    // crm: R2 ended, its callback ticket, R1 ended, its ticket updated (and
    // perhaps the creation of R1's ticket again: deliveries are at least once);
    // zammad: both hangups.
    let after = collect_until(&mut rx, Duration::from_secs(20), |got| {
        let stories = json_stories(got);
        let tickets = ticket_changes(got, "/hook");
        stories.len() == 2
            && zammad_events(got).len() == 2
            && tickets.iter().any(|t| t["kind"] == "callback")
            && tickets
                .iter()
                .any(|t| t["kind"] == "call" && t["created"] == false)
    })
    .await;
    let stories = json_stories(&after);
    assert_eq!(stories[&call_id("pbx1", "R2")], ["#1 ended missed: cancel"]);
    assert_eq!(
        stories[&call_id("pbx1", "R1")],
        ["#1 ended answered: normalClearing"]
    );
    let tickets = ticket_changes(&after, "/hook");
    let callback = tickets
        .iter()
        .find(|t| t["call_id"] == call_id("pbx1", "R2"))
        .unwrap_or_else(|| panic!("no callback ticket for R2: {tickets:#?}"));
    assert_eq!(
        (
            callback["kind"].as_str(),
            callback["status"].as_str(),
            &callback["created"]
        ),
        (Some("callback"), Some("open"), &json!(true))
    );
    // R1's ticket, made at the answer before the restart, is updated at its end.
    assert!(
        tickets.iter().any(|t| t["call_id"] == call_id("pbx1", "R1")
            && t["kind"] == "call"
            && t["id"] == answered_ticket["id"]
            && t["created"] == false),
        "{tickets:#?}"
    );
    let hangups: Vec<&Received> = after.iter().filter(|d| d.path == "/zammad").collect();
    assert_eq!(hangups.len(), 2);
    assert!(
        hangups[0]
            .body
            .starts_with("event=hangup&from=%2B33698765432&to=202&direction=in&callId=")
            && hangups[0].body.ends_with("cause=cancel"),
        "Zammad gets the whole hangup of a call started before the restart: {}",
        hangups[0].body
    );
    assert!(hangups[1]
        .body
        .starts_with("event=hangup&from=%2B33612345678&to=201&direction=in"));
    drop(fiche);
}

#[tokio::test]
async fn https_targets_trust_a_private_ca_from_ca_file() {
    let scratch = Scratch::create().unwrap();
    let token = add_token(&scratch, "pbx1").unwrap();
    let pki = TestPki::generate("Fiche test CA").unwrap();
    let other = TestPki::generate("Some other CA").unwrap();
    let ca_file = scratch.path().join("ca.pem");
    let other_ca_file = scratch.path().join("other-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    std::fs::write(&other_ca_file, &other.ca_pem).unwrap();
    let receiver = webhook_receiver::tls(0, &pki).await.unwrap();
    let port = receiver.port;
    let mut rx = receiver.requests;
    let target = |name: &str, ca: &std::path::Path| {
        format!(
            "[[webhooks]]\nname = \"{name}\"\nurl = \"https://127.0.0.1:{port}/{name}\"\n\
             secret = \"{name}-s3cret\"\nca_file = \"{}\"\nmax_backoff_secs = 1\n\
             events = [\"call_started\", \"ringing\", \"ended\"]\n\n",
            ca.display()
        )
    };
    // "partner" trusts another CA: the receiver's certificate is refused.
    let config = format!(
        "{}{}",
        target("crm", &ca_file),
        target("partner", &other_ca_file)
    );
    let fiche = start(&scratch, "fiche", &config).await;
    let client = Client {
        port: fiche.http_port(),
        session: None,
    };
    let ok = (200, json!({}));
    for body in [
        "event=newCall&direction=in&from=0612345678&to=201&callId=T1",
        "event=hangup&callId=T1&cause=cancel",
    ] {
        assert_eq!(client.post_form(&token, body).await, ok);
    }
    let trusted = collect(&mut rx, 3, Duration::from_secs(20)).await;
    assert!(trusted.iter().all(|d| d.path == "/crm"), "{trusted:#?}");
    for d in &trusted {
        d.verify("crm-s3cret");
    }
    let t1 = call_id("pbx1", "T1");
    assert_eq!(
        json_stories_at(&trusted, "/crm")[&t1],
        [
            "#1 call_started inbound caller=+33612345678 callee=201",
            "#1 ringing 201",
            "#1 ended missed: cancel",
        ]
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing reaches a target whose certificate is not trusted"
    );
    let log = fiche.log_text();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("webhook delivery failed") && l.contains("partner"))
        .collect();
    assert!(
        refusals.len() >= 2,
        "retried, and logged naming the target:\n{log}"
    );
    assert!(
        refusals.iter().all(|l| l.contains("certificate")),
        "the log says why: {refusals:#?}"
    );
    assert!(
        !log.contains("s3cret"),
        "a webhook secret reached the log:\n{log}"
    );
    drop(fiche);

    // Once given the right CA, the target gets everything that waited, in order.
    let config = format!("{}{}", target("crm", &ca_file), target("partner", &ca_file));
    let fiche = start(&scratch, "fiche-trusted", &config).await;
    let delivered = collect(&mut rx, 3, Duration::from_secs(30)).await;
    assert!(
        delivered.iter().all(|d| d.path == "/partner"),
        "{delivered:#?}"
    );
    for d in &delivered {
        d.verify("partner-s3cret");
    }
    assert_eq!(
        json_stories_at(&delivered, "/partner")[&t1],
        [
            "#1 call_started inbound caller=+33612345678 callee=201",
            "#1 ringing 201",
            "#1 ended missed: cancel",
        ]
    );
    drop(fiche);
}

/// Calls posted in the crash test: each is killed right after its hangup's reply.
const CRASHED_CALLS: usize = 20;

/// A phone system never sends a request Fiche acknowledged again. Each of
/// `CRASHED_CALLS` calls is posted whole (newCall, answer, hangup), then Fiche is
/// killed (`SIGKILL`, no drain) the instant the hangup's `{}` arrives; after a
/// last restart on the same database, every call is ended and has its ticket.
async fn acknowledged_calls_survive_kill_9(scratch: &Scratch, url: &str) {
    let token = add_token_on(url, "pbx1").unwrap();
    let extra = [("FICHE_DATABASE_URL", url.to_owned())];
    let ok = (200, json!({}));
    for n in 0..CRASHED_CALLS {
        let fiche = FicheProcess::start(
            scratch,
            &format!("fiche-{n}"),
            &AmiSetup::Toml(CONFIG.to_owned()),
            &extra,
        )
        .await
        .unwrap();
        let client = Client {
            port: fiche.http_port(),
            session: None,
        };
        for body in [
            format!("event=newCall&direction=in&from=06123456{n:02}&to=201&callId=K{n}"),
            format!("event=answer&callId=K{n}&answeringNumber=201"),
            format!("event=hangup&callId=K{n}&cause=normalClearing"),
        ] {
            assert_eq!(client.post_form(&token, &body).await, ok, "{body}");
        }
        fiche.kill().await.unwrap();
    }
    let fiche = FicheProcess::start(
        scratch,
        "fiche-after",
        &AmiSetup::Toml(CONFIG.to_owned()),
        &extra,
    )
    .await
    .unwrap();
    let (ended, ticketed) = crashed_calls_written(url).await.unwrap();
    assert_eq!(
        (ended, ticketed),
        (CRASHED_CALLS as i64, CRASHED_CALLS as i64),
        "ended CTI calls and their tickets after {CRASHED_CALLS} crashes"
    );
    drop(fiche);
}

/// CTI calls ended in the call log, and those of them with a ticket, read
/// straight from the database.
async fn crashed_calls_written(url: &str) -> anyhow::Result<(i64, i64)> {
    const ENDED: &str = "SELECT COUNT(*) FROM calls WHERE source = 'cti' AND ended_at IS NOT NULL";
    const TICKETED: &str = "SELECT COUNT(*) FROM calls c WHERE c.source = 'cti' \
        AND c.ended_at IS NOT NULL AND EXISTS (SELECT 1 FROM tickets t WHERE t.call_id = c.id)";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let ended = sqlx::query_scalar(ENDED).fetch_one(&pool).await?;
        let ticketed = sqlx::query_scalar(TICKETED).fetch_one(&pool).await?;
        pool.close().await;
        Ok((ended, ticketed))
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let ended = sqlx::query_scalar(ENDED).fetch_one(&pool).await?;
        let ticketed = sqlx::query_scalar(TICKETED).fetch_one(&pool).await?;
        pool.close().await;
        Ok((ended, ticketed))
    }
}

#[tokio::test]
async fn acknowledged_cti_calls_survive_a_crash_on_sqlite() {
    let scratch = Scratch::create().unwrap();
    acknowledged_calls_survive_kill_9(&scratch, &database_url(&scratch)).await;
}

#[tokio::test]
async fn acknowledged_cti_calls_survive_a_crash_on_postgres() {
    let scratch = Scratch::create().unwrap();
    let schema = PgSchema::create("cti").await;
    acknowledged_calls_survive_kill_9(&scratch, &schema.url).await;
    schema.drop_schema().await;
}
