//! Fiche with Odoo, end to end: the `fiche` binary against the Odoo test server
//! (`harness/odoo.rs`, 17-style over JSON-RPC and 19-style over JSON-2).
//! Customers are checked through `/api/customers/lookup`, which answers from the
//! server's in-memory index: what the pop card uses.
//!
//! Nothing installed.

use anyhow::{bail, Context};
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::odoo::{Helpdesk, OdooSpec, TestOdoo};
use fiche_e2e::testbed::fiche_binary;
use fiche_e2e::{auth, http};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Bound of a wait for a change to reach the index (polls are every second; the
/// margin is for a loaded machine, not a speed assertion).
const SYNC_LIMIT: Duration = Duration::from_secs(120);
/// Guard against a hung command, in seconds.
const COMMAND_LIMIT_SECS: u32 = 300;

/// The `[odoo]` table for `odoo` (the key comes from the environment).
fn odoo_toml(odoo: &TestOdoo) -> String {
    let spec = odoo.spec();
    format!(
        "[odoo]\nurl = \"{}\"\ndatabase = \"{}\"\nlogin = \"{}\"\npoll_interval_secs = 1\n",
        odoo.url(),
        spec.database,
        spec.login
    )
}

/// `fiche odoo <args>` with the key `key`: (success, stdout, stderr).
async fn fiche_odoo(
    scratch: &Scratch,
    odoo: &TestOdoo,
    key: &str,
    args: &[&str],
) -> (bool, String, String) {
    let config = scratch.path().join("odoo-cli.toml");
    std::fs::write(&config, odoo_toml(odoo)).unwrap();
    let output = tokio::process::Command::new("timeout")
        .arg(COMMAND_LIMIT_SECS.to_string())
        .arg(fiche_binary().unwrap())
        .arg("--config")
        .arg(&config)
        .arg("odoo")
        .args(args)
        .current_dir(scratch.path())
        .env(
            "FICHE_DATABASE_URL",
            format!("sqlite://{}/fiche.db", scratch.path().display()),
        )
        .env("FICHE_ODOO_API_KEY", key)
        .env("FICHE_LOG", "warn")
        .env_remove("FICHE_CONFIG")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn serve(scratch: &Scratch, odoo: &TestOdoo, key: &str) -> FicheProcess {
    FicheProcess::start(
        scratch,
        "fiche",
        &AmiSetup::Toml(odoo_toml(odoo)),
        &[
            ("FICHE_ODOO_API_KEY", key.to_owned()),
            ("FICHE_CUSTOMERS_SYNC_MS", "200".to_owned()),
        ],
    )
    .await
    .expect("starting fiche")
}

/// What `/api/customers/lookup` gives for `number`: (name, company, email).
async fn lookup(port: u16, token: &str, number: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!("/api/customers/lookup?number={number}");
    let (status, body) = http::get_as(port, &path, token).await?;
    if status != 200 {
        bail!("GET {path} answered {status}: {body}");
    }
    let answer: Value = serde_json::from_str(&body).with_context(|| body.clone())?;
    Ok(answer["matches"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m["customer"].clone())
        .collect())
}

/// Polls the lookup until `done` holds, at most [`SYNC_LIMIT`].
async fn wait_for(
    fiche: &FicheProcess,
    token: &str,
    number: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let found = lookup(fiche.http_port(), token, number).await.unwrap();
        if done(&found) {
            return found;
        }
        assert!(
            started.elapsed() < SYNC_LIMIT,
            "{what}: after {SYNC_LIMIT:?} the lookup of {number} gives {found:?}; log:\n{}",
            fiche.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(found: &[Value]) -> Vec<String> {
    found
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_version_models_and_fields_on_17_and_19() {
    let scratch = Scratch::create().unwrap();
    let v17 = TestOdoo::start(OdooSpec::v17(Helpdesk::Enterprise))
        .await
        .unwrap();
    let key = v17.spec().api_key;
    let (ok, out, err) = fiche_odoo(&scratch, &v17, &key, &["check"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Odoo 17.0+e (Enterprise)"), "{out}");
    assert!(out.contains("JSON-RPC"), "{out}");
    assert!(out.contains("Assistance Odoo Enterprise"), "{out}");
    assert!(
        out.contains("phone, email") && out.contains("mobile"),
        "{out}"
    );
    assert!(out.contains("Odoo est prêt pour Fiche"), "{out}");

    let v19 = TestOdoo::start(OdooSpec::v19(Helpdesk::Oca)).await.unwrap();
    let (ok, out, err) = fiche_odoo(&scratch, &v19, &key, &["check"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Odoo 19.0 (Community)"), "{out}");
    assert!(out.contains("JSON-2"), "{out}");
    assert!(out.contains("module OCA helpdesk_mgmt"), "{out}");
    assert!(out.contains("pas de champ mobile"), "{out}");

    // A right not granted is named, with the model and what to do.
    v19.deny("helpdesk.ticket", "create");
    let (_, out, _) = fiche_odoo(&scratch, &v19, &key, &["check"]).await;
    assert!(
        out.contains("helpdesk.ticket : l'utilisateur de Fiche ne peut pas créer"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_clear_error_at_check_and_at_start_and_fiche_keeps_working() {
    for spec in [
        OdooSpec::v17(Helpdesk::Enterprise),
        OdooSpec::v19(Helpdesk::Oca),
    ] {
        let scratch = Scratch::create().unwrap();
        let odoo = TestOdoo::start(spec).await.unwrap();
        odoo.seed_partners(3);
        let (ok, out, err) = fiche_odoo(&scratch, &odoo, "wrong-key", &["check"]).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains("Connexion refusée pour l'utilisateur « fiche-bot »"),
            "{out}"
        );
        assert!(out.contains("FICHE_ODOO_API_KEY"), "{out}");
        assert!(!out.contains("wrong-key") && !err.contains("wrong-key"));
        let (ok, _, err) = fiche_odoo(&scratch, &odoo, "wrong-key", &["sync"]).await;
        assert!(!ok);
        assert!(err.contains("Odoo refuse la connexion"), "{err}");

        // The server starts anyway, says why Odoo is not followed, never logs the key.
        let fiche = serve(&scratch, &odoo, "wrong-key").await;
        let started = Instant::now();
        while !fiche.log_text().contains("Odoo refuse la connexion") {
            assert!(started.elapsed() < SYNC_LIMIT, "{}", fiche.log_tail(30));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!fiche.log_text().contains("wrong-key"));
        assert_eq!(fiche.health().await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_partners_then_changes_archives_and_deletions_reach_the_index() {
    for spec in [
        OdooSpec::v17(Helpdesk::Enterprise),
        OdooSpec::v19(Helpdesk::Oca),
    ] {
        let major = spec.major;
        let scratch = Scratch::create().unwrap();
        let odoo = TestOdoo::start(spec).await.unwrap();
        odoo.seed_partners(10_000);
        let helene = odoo.add_partner(json!({
            "name": "Hélène Lefèvre", "phone": "06 11 22 33 44", "email": "helene@example.fr",
        }));
        let zoe = odoo.add_partner(json!({"name": "Zoé Garçon", "phone": "+33 6 55 66 77 88"}));
        let paul = odoo.add_partner(json!({"name": "Paul Durand", "phone": "07 81 02 03 04"}));
        let odd = odoo.add_partner(json!({"name": "Numéro bizarre", "phone": "voir avec Paul"}));
        let key = odoo.spec().api_key;

        // The first import from the command line, numbers not understood named by id.
        let (ok, out, err) = fiche_odoo(&scratch, &odoo, &key, &["sync"]).await;
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("10005 contacts lus"), "{out}");
        assert!(out.contains("10005 créés"), "{out}");
        assert!(
            out.contains(&format!(
                "contact Odoo {odd} : numéro phone \"voir avec Paul\" non reconnu"
            )),
            "{out}"
        );

        let fiche = serve(&scratch, &odoo, &key).await;
        let token = auth::admin_token(fiche.http_port()).await.unwrap();
        // Every partner is in the index: the first, the last, one of a company.
        let found = wait_for(&fiche, &token, "0110000000", "partner 0", |f| !f.is_empty()).await;
        assert_eq!(names(&found), vec!["Client 0"]);
        assert_eq!(found[0]["company"], json!("Boulangerie Martin"));
        let client0 = odoo
            .records("res.partner")
            .into_iter()
            .find(|p| p["name"] == json!("Client 0"))
            .unwrap();
        assert_eq!(
            found[0]["external_ref"],
            json!(format!("odoo:res.partner:{}", client0["id"]))
        );
        let last = wait_for(&fiche, &token, "+33110009999", "partner 9999", |f| {
            !f.is_empty()
        })
        .await;
        assert_eq!(names(&last), vec!["Client 9999"]);
        assert_eq!(last[0]["notes"], json!("Client fidèle"));

        // In Odoo: Hélène changes number, Zoé is archived, Paul deleted.
        odoo.write_partner(
            helene,
            json!({"phone": "06 99 88 77 66", "name": "Hélène Lefèvre-Roy"}),
        );
        odoo.write_partner(zoe, json!({"active": false}));
        odoo.delete_partner(paul);
        let moved = wait_for(&fiche, &token, "0699887766", "the change", |f| {
            !f.is_empty()
        })
        .await;
        assert_eq!(names(&moved), vec!["Hélène Lefèvre-Roy"], "Odoo {major}");
        wait_for(&fiche, &token, "0611223344", "the old number", |f| {
            f.is_empty()
        })
        .await;
        wait_for(&fiche, &token, "0655667788", "the archive", |f| {
            f.is_empty()
        })
        .await;
        // The deletion is found by the periodic sweep (every 10 polls).
        wait_for(&fiche, &token, "0781020304", "the deletion", |f| {
            f.is_empty()
        })
        .await;
        // Unarchived, Zoé comes back.
        odoo.write_partner(zoe, json!({"active": true}));
        wait_for(&fiche, &token, "0655667788", "the unarchive", |f| {
            names(f) == vec!["Zoé Garçon"]
        })
        .await;
        drop(fiche);
    }
}

/// `fiche <args>` on the scratch database (user and CTI token commands): stdout.
async fn fiche_admin(scratch: &Scratch, args: &[&str]) -> String {
    let output = tokio::process::Command::new(fiche_binary().unwrap())
        .args(args)
        .env(
            "FICHE_DATABASE_URL",
            format!("sqlite://{}/fiche.db", scratch.path().display()),
        )
        .env("FICHE_LOG", "warn")
        .env_remove("FICHE_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "fiche {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The agent page's websocket (`/ws`), as a raw stream of frames.
async fn page_socket(
    port: u16,
    token: &str,
) -> impl futures_util::Stream<
    Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
}

/// One Zammad-style CTI request (JSON); the webhook answers `{}`.
async fn cti(port: u16, token: &str, body: Value) {
    let path = format!("/api/v1/cti/{token}");
    let (status, answer) = http::request(port, "POST", &path, None, Some(&body.to_string()))
        .await
        .unwrap();
    assert_eq!((status, answer.as_str()), (200, "{}"), "{body}");
}

/// Waits until `done` holds for the test server's records of `model`.
async fn wait_odoo(
    odoo: &TestOdoo,
    fiche: &FicheProcess,
    model: &str,
    what: &str,
    done: impl Fn(&[serde_json::Map<String, Value>]) -> bool,
) -> Vec<serde_json::Map<String, Value>> {
    let started = Instant::now();
    loop {
        let records = odoo.records(model);
        if done(&records) {
            return records;
        }
        assert!(
            started.elapsed() < SYNC_LIMIT,
            "{what}: after {SYNC_LIMIT:?} Odoo's {model} holds {records:?}; log:\n{}",
            fiche.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ticket_of(
    tickets: &[serde_json::Map<String, Value>],
    fiche_id: i64,
) -> Option<&serde_json::Map<String, Value>> {
    let marker = format!("[Fiche #{fiche_id}]");
    tickets
        .iter()
        .find(|t| t["name"].as_str().is_some_and(|n| n.contains(&marker)))
}

/// An answered call and a missed one, on one server style.
async fn calls_become_helpdesk_tickets(spec: OdooSpec) {
    let helpdesk = spec.helpdesk;
    let scratch = Scratch::create().unwrap();
    let odoo = TestOdoo::start(spec).await.unwrap();
    let helene = odoo.add_partner(json!({"name": "Hélène Lefèvre", "phone": "06 11 22 33 44"}));
    let claire_odoo = odoo.add(
        "res.users",
        json!({"login": "claire", "name": "Claire", "email": "claire@example.com"}),
    );
    let key = odoo.spec().api_key;
    let token = fiche_admin(&scratch, &["cti", "token", "add", "pbx1"])
        .await
        .trim()
        .to_owned();
    let (ok, out, err) = fiche_odoo(&scratch, &odoo, &key, &["sync"]).await;
    assert!(ok, "{out}\n{err}");
    let fiche = serve(&scratch, &odoo, &key).await;
    let port = fiche.http_port();
    let admin = auth::admin_token(port).await.unwrap();
    let (status, answer) = http::request(
        port,
        "POST",
        "/api/users",
        Some(&admin),
        Some(r#"{"login":"claire","display_name":"Claire","role":"agent","extensions":["201"],"password":"claire-password-1"}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{answer}");

    // Answered: Hélène calls Claire.
    cti(port, &token, json!({"event": "newCall", "direction": "in", "from": "0611223344", "to": "201", "callId": "A1", "user": "201"})).await;
    cti(
        port,
        &token,
        json!({"event": "answer", "callId": "A1", "answeringNumber": "201"}),
    )
    .await;
    cti(
        port,
        &token,
        json!({"event": "hangup", "callId": "A1", "cause": "normalClearing"}),
    )
    .await;
    let tickets = wait_odoo(&odoo, &fiche, "helpdesk.ticket", "the answered call", |t| {
        !t.is_empty()
    })
    .await;
    let ticket = &tickets[0];
    assert_eq!(ticket["partner_id"], json!(helene), "{ticket:?}");
    assert!(
        !ticket.contains_key("partner_phone"),
        "partner set: no partner_phone {ticket:?}"
    );
    let ticket_id = ticket["id"].as_i64().unwrap();
    let messages = wait_odoo(&odoo, &fiche, "mail.message", "the chatter", |m| {
        m.iter().any(|m| m["res_id"] == json!(ticket_id))
    })
    .await;
    let body = messages
        .iter()
        .find(|m| m["res_id"] == json!(ticket_id) && m["model"] == json!("helpdesk.ticket"))
        .and_then(|m| m["body"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        body.contains("Appel entrant, numéro +33611223344"),
        "{body}"
    );
    assert!(body.contains("Issue : répondu"), "{body}");
    if helpdesk == Helpdesk::Oca {
        assert!(
            ticket["description"]
                .as_str()
                .is_some_and(|d| d.contains("Appel entrant")),
            "{ticket:?}"
        );
        assert_eq!(
            ticket["channel_id"],
            json!(3),
            "the Phone channel: {ticket:?}"
        );
    }
    // The partner's own phone is untouched.
    assert_eq!(
        odoo.record("res.partner", helene).unwrap()["phone"],
        json!("06 11 22 33 44")
    );

    // Missed: a callback, with a "Call" activity for Claire due on its due day.
    cti(port, &token, json!({"event": "newCall", "direction": "in", "from": "0611223344", "to": "201", "callId": "M1", "user": "201"})).await;
    cti(
        port,
        &token,
        json!({"event": "hangup", "callId": "M1", "cause": "cancel"}),
    )
    .await;
    let activities = wait_odoo(
        &odoo,
        &fiche,
        "mail.activity",
        "the callback's activity",
        |a| !a.is_empty(),
    )
    .await;
    let activity = &activities[0];
    let (status, listed) = http::get_as(port, "/api/tickets?kind=callback", &admin)
        .await
        .unwrap();
    assert_eq!(status, 200, "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let items = listed.get("items").unwrap_or(&listed);
    let callback = items
        .as_array()
        .and_then(|a| a.iter().find(|t| t["kind"] == json!("callback")))
        .cloned()
        .unwrap_or_else(|| panic!("no callback in {listed}"));
    let due = callback["due_at"].as_str().unwrap_or_default();
    assert_eq!(
        activity["date_deadline"],
        json!(&due[..10]),
        "{activity:?} vs {callback}"
    );
    assert_eq!(
        activity["activity_type_id"],
        json!(2),
        "the Call type: {activity:?}"
    );
    assert!(
        callback["assignee_user_id"].is_i64(),
        "Claire owns the callback: {callback}"
    );
    assert_eq!(activity["user_id"], json!(claire_odoo), "{activity:?}");
    let odoo_ticket = ticket_of(
        &odoo.records("helpdesk.ticket"),
        callback["id"].as_i64().unwrap(),
    )
    .cloned()
    .expect("the callback's Odoo ticket");
    assert_eq!(activity["res_id"], odoo_ticket["id"]);

    // A crash between Odoo's answer and Fiche recording the activity's id loses
    // the record: the callback's next change finds the activity again (by its
    // summary) instead of scheduling a second one.
    let database = format!("sqlite://{}/fiche.db", scratch.path().display());
    let pool = sqlx::SqlitePool::connect(&database).await.unwrap();
    sqlx::query("DELETE FROM odoo_links WHERE kind = 'activity'")
        .execute(&pool)
        .await
        .unwrap();
    let (status, answer) = http::request(
        port,
        "PATCH",
        &format!("/api/tickets/{}", callback["id"]),
        Some(&admin),
        Some(r#"{"reason":"Rappel prévu demain matin"}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let started = Instant::now();
    loop {
        let (links,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM odoo_links WHERE kind = 'activity'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if links == 1 {
            break;
        }
        assert!(
            started.elapsed() < SYNC_LIMIT,
            "the activity was never recorded again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    let activities = odoo.records("mail.activity");
    assert_eq!(activities.len(), 1, "one Call activity: {activities:?}");

    // Hélène calls again: Claire's card links her Odoo contact and the open
    // callback's Odoo ticket.
    let claire = auth::login(port, "claire", "claire-password-1")
        .await
        .unwrap();
    let mut page = page_socket(port, &claire).await;
    cti(port, &token, json!({"event": "newCall", "direction": "in", "from": "0611223344", "to": "201", "callId": "L1", "user": "201"})).await;
    let base = odoo.url();
    let partner_url = format!("{base}/web#id={helene}&model=res.partner&view_type=form");
    let ticket_url = format!(
        "{base}/web#id={}&model=helpdesk.ticket&view_type=form",
        odoo_ticket["id"]
    );
    let started = Instant::now();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), page.next())
            .await
            .ok()
            .flatten()
            .and_then(Result::ok)
            .and_then(|m| m.into_text().ok())
            .map(|t| t.to_string())
            .unwrap_or_default();
        if frame.contains(&partner_url) && frame.contains(&ticket_url) {
            break;
        }
        assert!(
            started.elapsed() < SYNC_LIMIT,
            "no card with the Odoo links; last frame {frame}"
        );
    }
    cti(
        port,
        &token,
        json!({"event": "hangup", "callId": "L1", "cause": "cancel"}),
    )
    .await;

    // Closing the callback in Fiche marks the activity done.
    let (status, answer) = http::request(
        port,
        "PATCH",
        &format!("/api/tickets/{}", callback["id"]),
        Some(&admin),
        Some(r#"{"status":"closed"}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    wait_odoo(&odoo, &fiche, "mail.activity", "the activity done", |a| {
        a.first()
            .is_some_and(|a| a["active"] == json!(false) && a["date_done"].is_string())
    })
    .await;
    // ... and moves its Odoo ticket to the first closing stage ("Done": a
    // folded stage on Enterprise, a `closed` one on OCA).
    let (stages, flag) = match helpdesk {
        Helpdesk::Oca => ("helpdesk.ticket.stage", "closed"),
        _ => ("helpdesk.stage", "fold"),
    };
    let done = odoo
        .records(stages)
        .into_iter()
        .find(|stage| stage[flag] == json!(true))
        .expect("a closing stage on the test server");
    assert_eq!(done["name"], json!("Done"));
    let callback_id = callback["id"].as_i64().unwrap();
    wait_odoo(
        &odoo,
        &fiche,
        "helpdesk.ticket",
        "the ticket in its closing stage",
        |t| ticket_of(t, callback_id).is_some_and(|t| t["stage_id"] == done["id"]),
    )
    .await;
    drop(fiche);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_become_helpdesk_tickets_on_17_enterprise() {
    calls_become_helpdesk_tickets(OdooSpec::v17(Helpdesk::Enterprise)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_become_helpdesk_tickets_on_19_oca() {
    calls_become_helpdesk_tickets(OdooSpec::v19(Helpdesk::Oca)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_become_helpdesk_tickets_on_17_oca_and_19_enterprise() {
    calls_become_helpdesk_tickets(OdooSpec::v17(Helpdesk::Oca)).await;
    calls_become_helpdesk_tickets(OdooSpec::v19(Helpdesk::Enterprise)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_down_for_200_calls_then_back_gets_every_ticket_once_in_order() {
    let scratch = Scratch::create().unwrap();
    let odoo = TestOdoo::start(OdooSpec::v19(Helpdesk::Enterprise))
        .await
        .unwrap();
    let key = odoo.spec().api_key;
    let token = fiche_admin(&scratch, &["cti", "token", "add", "pbx1"])
        .await
        .trim()
        .to_owned();
    let fiche = serve(&scratch, &odoo, &key).await;
    let port = fiche.http_port();
    odoo.set_down(true);
    for i in 0..200 {
        let call = format!("D{i}");
        let from = format!("06{:08}", 20_000_000 + i);
        cti(port, &token, json!({"event": "newCall", "direction": "in", "from": from, "to": "201", "callId": call})).await;
        cti(
            port,
            &token,
            json!({"event": "answer", "callId": call, "answeringNumber": "201"}),
        )
        .await;
        cti(
            port,
            &token,
            json!({"event": "hangup", "callId": call, "cause": "normalClearing"}),
        )
        .await;
    }
    assert!(odoo.records("helpdesk.ticket").is_empty());
    odoo.set_down(false);
    let tickets = wait_odoo(&odoo, &fiche, "helpdesk.ticket", "the 200 tickets", |t| {
        t.len() >= 200
    })
    .await;
    // Give a duplicate the time to show up, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tickets = if odoo.records("helpdesk.ticket").len() > tickets.len() {
        odoo.records("helpdesk.ticket")
    } else {
        tickets
    };
    assert_eq!(tickets.len(), 200, "every ticket once");
    // Created in Fiche's order: Odoo ids follow Fiche ids.
    let fiche_ids: Vec<i64> = tickets
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_default();
            let start = name.find("[Fiche #").unwrap() + 8;
            name[start..name.len() - 1].parse().unwrap()
        })
        .collect();
    let mut sorted = fiche_ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(fiche_ids, sorted, "in order, none twice");
    // Partner-less tickets carry the caller's number instead (Enterprise).
    assert!(tickets.iter().all(|t| t["partner_phone"]
        .as_str()
        .is_some_and(|p| p.starts_with("+336"))));
}
