//! The authorization matrix of `docs/authorization.md`, route by route, against
//! the real `fiche` binary: one table of (method, path, body, expected status for
//! an agent, a supervisor, an admin), then what the allowed answers contain
//! (an agent's live calls and call log are hers only).
//!
//! The calls come in through the CTI webhook, so the ticket writer makes the
//! tickets as in production: Claire (agent, 201) answered one call, Malik
//! (agent, 202) another, a call that rang at both was missed (a callback
//! assigned to nobody), and one call rings at each of them now.
//!
//! Nothing installed.

use anyhow::{bail, Context};
use fiche_e2e::auth::{admin_token, login};
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::http;
use fiche_e2e::testbed::fiche_binary;
use fiche_pbx::{CallId, Source};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Ended calls stay in the live table through the whole test.
const CONFIG: &str = "[calls]\nended_linger_secs = 600\n";
const PASSWORD: &str = "a-long-password";

/// The roles of the matrix's columns, in order.
const ROLES: [&str; 3] = ["agent", "supervisor", "admin"];

/// `fiche cti token add pbx` on the scratch database: the printed token.
fn cti_token(scratch: &Scratch) -> anyhow::Result<String> {
    let output = std::process::Command::new(fiche_binary()?)
        .args(["cti", "token", "add", "pbx"])
        .env(
            "FICHE_DATABASE_URL",
            format!("sqlite://{}/fiche.db", scratch.path().display()),
        )
        .env_remove("FICHE_CONFIG")
        .output()?;
    if !output.status.success() {
        bail!("token add: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// One request as `token`: status and body parsed as JSON (text when not JSON).
async fn call(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, text) = http::request(port, method, path, Some(token), body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The HTTP status of a websocket upgrade of `path` as `token` (101 when it
/// opens), and the refusal's JSON body.
async fn upgrade(port: u16, path: &str, token: &str) -> (u16, Value) {
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("a websocket request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header value"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => (101, Value::Null),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("{path}: {other}"),
    }
}

/// A CTI request (JSON) that must be answered `{}`.
async fn cti(port: u16, token: &str, body: Value) {
    let path = format!("/api/v1/cti/{token}");
    let (status, answer) = http::request(port, "POST", &path, None, Some(&body.to_string()))
        .await
        .expect("CTI request");
    assert_eq!(status, 200, "{body}: {answer}");
}

/// The call id Fiche gives CTI call `id` of token `pbx`.
fn call_id(id: &str) -> String {
    CallId::from_source_key(Source::Cti, &format!("pbx/{id}")).to_string()
}

/// Polls `path` as `token` until `done` holds (bounded).
async fn until(port: u16, token: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(port, token, "GET", path, None).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct World {
    port: u16,
    /// Session tokens by role.
    tokens: HashMap<&'static str, String>,
    /// What the paths' `{placeholders}` stand for.
    names: HashMap<String, String>,
    /// The CTI webhook's token.
    cti: String,
}

impl World {
    /// `text` with `{name}` and `{role}` replaced; `{doomed}` and `{phone}` are per role.
    fn fill(&self, text: &str, role: &str) -> String {
        let mut text = text.replace("{role}", role);
        for (name, value) in &self.names {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        for per_role in ["doomed", "phone"] {
            if let Some(value) = self.names.get(&format!("{per_role}_{role}")) {
                text = text.replace(&format!("{{{per_role}}}"), value);
            }
        }
        text
    }
}

async fn add_user(port: u16, admin: &str, login: &str, role: &str, ext: &[&str]) -> i64 {
    let body = json!({"login": login, "display_name": login, "role": role,
                      "extensions": ext, "password": PASSWORD})
    .to_string();
    let (status, user) = call(port, admin, "POST", "/api/users", Some(&body)).await;
    assert_eq!(status, 201, "{user}");
    user["id"].as_i64().expect("a user id")
}

/// Fiche with Claire, Malik, Sophie and the calls of the module's header.
async fn world(scratch: &Scratch) -> anyhow::Result<(FicheProcess, World)> {
    // The CLI migrates the database, so the token exists before Fiche starts.
    let cti_token = cti_token(scratch)?;
    let fiche = FicheProcess::start(scratch, "fiche", &AmiSetup::Toml(CONFIG.into()), &[]).await?;
    let port = fiche.http_port();
    let admin = admin_token(port).await?;
    let claire = add_user(port, &admin, "claire", "agent", &["201"]).await;
    let malik = add_user(port, &admin, "malik", "agent", &["202"]).await;
    add_user(port, &admin, "sophie", "supervisor", &[]).await;

    let new_call = |id: &str, from: &str, users: &[&str]| {
        json!({"event": "newCall", "direction": "in", "from": from, "to": "0140000000",
               "callId": id, "user": users})
    };
    // Answered by Claire, answered by Malik, missed at both, ringing at each.
    for (id, from, ext) in [
        ("mine", "0611111101", "201"),
        ("malik", "0611111102", "202"),
    ] {
        cti(port, &cti_token, new_call(id, from, &[ext])).await;
        cti(
            port,
            &cti_token,
            json!({"event": "answer", "callId": id, "answeringNumber": ext}),
        )
        .await;
        cti(
            port,
            &cti_token,
            json!({"event": "hangup", "callId": id, "cause": "normalClearing"}),
        )
        .await;
    }
    cti(
        port,
        &cti_token,
        new_call("group", "0611111103", &["201", "202"]),
    )
    .await;
    cti(
        port,
        &cti_token,
        json!({"event": "hangup", "callId": "group", "cause": "cancel"}),
    )
    .await;
    cti(
        port,
        &cti_token,
        new_call("ring_malik", "0611111104", &["202"]),
    )
    .await;
    cti(
        port,
        &cti_token,
        new_call("ring_claire", "0611111105", &["201"]),
    )
    .await;

    let page = until(port, &admin, "/api/tickets?limit=50", |v| v["total"] == 3).await;
    let mut names: HashMap<String, String> = HashMap::new();
    for item in page["items"].as_array().context("ticket items")? {
        let name = match item["phone_e164"].as_str() {
            Some("+33611111101") => "ticket_mine",
            Some("+33611111102") => "ticket_malik",
            Some("+33611111103") => "ticket_group",
            other => bail!("unexpected ticket for {other:?}: {item}"),
        };
        names.insert(name.into(), item["id"].to_string());
    }
    for id in ["mine", "malik", "group", "ring_malik", "ring_claire"] {
        names.insert(format!("call_{id}"), call_id(id));
    }
    names.insert("claire".into(), claire.to_string());
    names.insert("malik".into(), malik.to_string());
    // Customers: one everybody reads and changes, one per role to delete.
    for (name, key) in [
        ("Mme Martin", "customer"),
        ("À supprimer A", "doomed_agent"),
        ("À supprimer S", "doomed_supervisor"),
        ("À supprimer Ad", "doomed_admin"),
    ] {
        let body = json!({"name": name}).to_string();
        let (status, customer) = call(port, &admin, "POST", "/api/customers", Some(&body)).await;
        assert_eq!(status, 201, "{customer}");
        names.insert(key.into(), customer["id"].to_string());
    }
    for (role, phone) in [
        ("agent", "0611111191"),
        ("supervisor", "0611111192"),
        ("admin", "0611111193"),
    ] {
        names.insert(format!("phone_{role}"), phone.into());
    }

    let mut tokens = HashMap::new();
    tokens.insert("agent", login(port, "claire", PASSWORD).await?);
    tokens.insert("supervisor", login(port, "sophie", PASSWORD).await?);
    tokens.insert("admin", admin);
    Ok((
        fiche,
        World {
            port,
            tokens,
            names,
            cti: cti_token,
        },
    ))
}

/// One line of the matrix: method (`WS` for a websocket upgrade), path, JSON
/// body, and the status expected for an agent (Claire), a supervisor, an admin.
type Row = (&'static str, &'static str, Option<&'static str>, [u16; 3]);

/// The matrix, in the order of docs/authorization.md. Rows run in order and
/// each row runs as agent, then supervisor, then admin; rows that change
/// something leave it as the next rows expect.
const MATRIX: &[Row] = &[
    // Account and users.
    ("GET", "/api/me", None, [200, 200, 200]),
    ("GET", "/api/users", None, [403, 403, 200]),
    (
        "POST",
        "/api/users",
        Some(r#"{"login":"new-{role}","role":"agent","password":"xxxxxxxxxx"}"#),
        [403, 403, 201],
    ),
    (
        "PATCH",
        "/api/users/{malik}",
        Some(r#"{"display_name":"malik"}"#),
        [403, 403, 200],
    ),
    // Calls: the live table and the log are filtered for agents (checked
    // below); the whole log of a colleague's extension and the figures are not theirs.
    ("GET", "/api/calls/live", None, [200, 200, 200]),
    ("GET", "/api/calls", None, [200, 200, 200]),
    ("GET", "/api/calls?agent=201", None, [200, 200, 200]),
    ("GET", "/api/calls?agent=202", None, [403, 200, 200]),
    ("GET", "/api/calls?number=0611111102", None, [200, 200, 200]),
    ("GET", "/api/kpis", None, [403, 200, 200]),
    // Click-to-call is everyone's (no AMI source here: 503 for all).
    (
        "POST",
        "/api/calls/originate",
        Some(r#"{"number":"0612345678"}"#),
        [503, 503, 503],
    ),
    // Tickets: everyone reads every ticket.
    ("GET", "/api/tickets", None, [200, 200, 200]),
    ("GET", "/api/tickets/{ticket_malik}", None, [200, 200, 200]),
    // An agent changes what is assigned to her or to nobody.
    (
        "PATCH",
        "/api/tickets/{ticket_mine}",
        Some(r#"{"priority":"high"}"#),
        [200, 200, 200],
    ),
    (
        "PATCH",
        "/api/tickets/{ticket_group}",
        Some(r#"{"priority":"high"}"#),
        [200, 200, 200],
    ),
    (
        "PATCH",
        "/api/tickets/{ticket_malik}",
        Some(r#"{"status":"open"}"#),
        [403, 200, 200],
    ),
    (
        "PATCH",
        "/api/tickets/{ticket_malik}",
        Some(r#"{"subject":"Renommé"}"#),
        [403, 200, 200],
    ),
    // She takes a callback of the group, then gives it back; she never hands
    // work to a colleague, a supervisor does.
    (
        "PATCH",
        "/api/tickets/{ticket_group}",
        Some(r#"{"assignee_user_id":{claire}}"#),
        [200, 200, 200],
    ),
    (
        "PATCH",
        "/api/tickets/{ticket_group}",
        Some(r#"{"assignee_user_id":null}"#),
        [200, 200, 200],
    ),
    // The supervisor hands Claire's ticket to Malik; Claire cannot take it
    // back from him, the supervisor gives it back to her.
    (
        "PATCH",
        "/api/tickets/{ticket_mine}",
        Some(r#"{"assignee_user_id":{malik}}"#),
        [403, 200, 200],
    ),
    (
        "PATCH",
        "/api/tickets/{ticket_mine}",
        Some(r#"{"assignee_user_id":{claire}}"#),
        [403, 200, 200],
    ),
    (
        "POST",
        "/api/tickets/{ticket_mine}/notes",
        Some(r#"{"body":"note"}"#),
        [201, 201, 201],
    ),
    (
        "POST",
        "/api/tickets/{ticket_group}/notes",
        Some(r#"{"body":"note"}"#),
        [201, 201, 201],
    ),
    (
        "POST",
        "/api/tickets/{ticket_malik}/notes",
        Some(r#"{"body":"note"}"#),
        [403, 201, 201],
    ),
    // The card's save: only on the calls that concern her. Ringing: held (202).
    (
        "POST",
        "/api/calls/{call_ring_claire}/ticket",
        Some(r#"{"note":"x"}"#),
        [202, 202, 202],
    ),
    (
        "POST",
        "/api/calls/{call_ring_malik}/ticket",
        Some(r#"{"note":"x"}"#),
        [403, 202, 202],
    ),
    (
        "POST",
        "/api/calls/{call_ring_malik}/ticket",
        Some(r#"{"status":"closed"}"#),
        [403, 202, 202],
    ),
    (
        "POST",
        "/api/calls/{call_mine}/ticket",
        Some(r#"{"note":"x"}"#),
        [200, 200, 200],
    ),
    (
        "POST",
        "/api/calls/{call_group}/ticket",
        Some(r#"{"note":"x"}"#),
        [200, 200, 200],
    ),
    (
        "POST",
        "/api/calls/{call_malik}/ticket",
        Some(r#"{"note":"x"}"#),
        [403, 200, 200],
    ),
    // The customer file is shared; deleting a customer is for supervisors.
    ("GET", "/api/customers", None, [200, 200, 200]),
    (
        "GET",
        "/api/customers/lookup?number=0611111101",
        None,
        [200, 200, 200],
    ),
    (
        "POST",
        "/api/customers",
        Some(r#"{"name":"Client {role}"}"#),
        [201, 201, 201],
    ),
    ("GET", "/api/customers/{customer}", None, [200, 200, 200]),
    (
        "PUT",
        "/api/customers/{customer}",
        Some(r#"{"name":"Mme Martin"}"#),
        [200, 200, 200],
    ),
    (
        "POST",
        "/api/customers/{customer}/phones",
        Some(r#"{"number":"{phone}"}"#),
        [200, 200, 200],
    ),
    ("DELETE", "/api/customers/{doomed}", None, [403, 204, 204]),
    // Websockets: everyone has the hub socket (filtered by the hub); the raw
    // event stream is the board's.
    ("WS", "/ws", None, [101, 101, 101]),
    ("WS", "/ws/events", None, [403, 101, 101]),
    // `fiche demo`'s "Simuler un appel" does not exist under `serve`; in the
    // demo it is the admin's (demo.rs: agent and supervisor 403, admin 202).
    ("POST", "/api/demo/calls", None, [404, 404, 404]),
    // Metrics are no role's: this test scrapes directly from loopback with no
    // metrics token configured, so every role gets them, as anyone would.
    ("GET", "/metrics", None, [200, 200, 200]),
];

#[tokio::test]
async fn each_role_may_do_what_the_matrix_says_and_nothing_more() {
    let scratch = Scratch::create().expect("scratch folder");
    let (_fiche, world) = world(&scratch).await.expect("the test world");
    let port = world.port;
    let mut wrong = Vec::new();
    for (method, path, body, expected) in MATRIX {
        for (role, expected) in ROLES.iter().zip(expected) {
            let token = &world.tokens[role];
            let path = world.fill(path, role);
            let body = body.map(|b| world.fill(b, role));
            let (status, answer) = if *method == "WS" {
                upgrade(port, &path, token).await
            } else {
                call(port, token, method, &path, body.as_deref()).await
            };
            if status != *expected {
                wrong.push(format!(
                    "{role} {method} {path} {body:?}: {status} (expected {expected}) {answer}"
                ));
            } else if status == 403 {
                // Refusals have the API's error shape.
                assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What the allowed answers hold: an agent's live calls are those her
    // websocket shows (ringing at her), her log the calls she handled.
    let agent = &world.tokens["agent"];
    let (_, live) = call(port, agent, "GET", "/api/calls/live", None).await;
    let ids: Vec<&str> = live
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, [world.names["call_ring_claire"].as_str()], "{live}");
    let (_, live) = call(
        port,
        &world.tokens["supervisor"],
        "GET",
        "/api/calls/live",
        None,
    )
    .await;
    assert_eq!(live.as_array().map(Vec::len), Some(5), "{live}");
    let (_, log) = call(port, agent, "GET", "/api/calls", None).await;
    let handled: Vec<&Value> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| &c["agent_extension"])
        .collect();
    assert_eq!(handled, [&json!("201")], "{log}");
    let (_, log) = call(port, agent, "GET", "/api/calls?number=0611111102", None).await;
    assert_eq!(
        log["total"], 1,
        "a customer's history, whoever handled it: {log}"
    );
}

#[tokio::test]
async fn a_save_refused_on_a_colleagues_ringing_call_leaves_its_callback_open() {
    let scratch = Scratch::create().expect("scratch folder");
    let (_fiche, world) = world(&scratch).await.expect("the test world");
    let port = world.port;
    let agent = &world.tokens["agent"];
    let path = world.fill("/api/calls/{call_ring_malik}/ticket", "agent");
    let (status, answer) = call(port, agent, "POST", &path, Some(r#"{"status":"closed"}"#)).await;
    assert_eq!(status, 403, "{answer}");
    // Malik misses the call: its callback is open, and counted as not called back.
    cti(
        port,
        &world.cti,
        json!({"event": "hangup", "callId": "ring_malik", "cause": "cancel"}),
    )
    .await;
    let supervisor = &world.tokens["supervisor"];
    let page = until(
        port,
        supervisor,
        "/api/tickets?kind=callback&q=%2B33611111104",
        |v| v["total"] == 1,
    )
    .await;
    let callback = &page["items"][0];
    assert_eq!(callback["status"], "open", "{callback}");
    assert_eq!(
        callback["assignee_user_id"].to_string(),
        world.names["malik"]
    );
    let (status, figures) = call(port, supervisor, "GET", "/api/kpis", None).await;
    assert_eq!(status, 200, "{figures}");
    assert_eq!(figures["missed_not_called_back"], 2, "{figures}");
}
