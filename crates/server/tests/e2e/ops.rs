//! What a sysadmin runs against the real `fiche` binary: `/metrics` scraped
//! before and after a call and read with a Prometheus text-format parser (the
//! counters move, the pop latency histogram has the pop); who may scrape (a
//! configured token is always required, loopback or not; without one, a
//! request relayed by a proxy is refused); and `fiche backup` taken while
//! tickets are being written, restored, and opened by `fiche serve`; the AMI
//! connection state as the manager comes and goes.
//!
//! Calls come in through the CTI webhook: a reply means the call and its
//! ticket are committed (durable before acknowledged), which is what lets the
//! backup test know exactly which tickets were committed before it began.
//!
//! Nothing installed.

use anyhow::bail;
use fiche_e2e::ami_server::{AmiScript, AmiServerOptions, AmiTestServer};
use fiche_e2e::auth::admin_token;
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::http;
use fiche_e2e::testbed::fiche_binary;
use futures_util::StreamExt;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "e2e-metrics-token-0123456789";

/// `fiche cti token add pbx` on the database at `url`: the printed token.
fn cti_token(url: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new(fiche_binary()?)
        .args(["cti", "token", "add", "pbx"])
        .env("FICHE_DATABASE_URL", url)
        .env_remove("FICHE_CONFIG")
        .output()?;
    if !output.status.success() {
        bail!("token add: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/fiche.db", dir.display())
}

/// One CTI request (JSON); the reply's status.
async fn cti(port: u16, token: &str, body: Json) -> anyhow::Result<u16> {
    let path = format!("/api/v1/cti/{token}");
    let (status, _) = http::request(port, "POST", &path, None, Some(&body.to_string())).await?;
    Ok(status)
}

/// `GET /metrics` with the given headers: status and body.
async fn scrape(port: u16, headers: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
    http::request_with(port, "GET", "/metrics", headers, None, None).await
}

/// `GET /metrics` from loopback, parsed as a scraper would.
async fn metrics(port: u16, headers: &[(&str, &str)]) -> Scrape {
    let (status, body) = scrape(port, headers).await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text format")
}

/// The sample of `metric` whose labels include `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// A counter's or gauge's value (0 when the series is absent).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{metric} is not a single value: {other:?}"),
        None => 0.0,
    }
}

/// A histogram's cumulative buckets as (upper bound, count).
fn buckets(scrape: &Scrape, metric: &str) -> Vec<(f64, f64)> {
    match find(scrape, metric, &[]).map(|s| &s.value) {
        Some(Value::Histogram(counts)) => counts.iter().map(|c| (c.less_than, c.count)).collect(),
        other => panic!("{metric} is not a histogram: {other:?}"),
    }
}

/// Claire's page socket, read until a pop arrives (bounded).
async fn wait_for_pop(
    socket: &mut (impl futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
              + Unpin),
) -> Json {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Text(text)) = message {
                let value: Json = serde_json::from_str(text.as_str()).unwrap_or(Json::Null);
                if value["type"] == "pop" {
                    return Some(value);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(pop)) => pop,
        other => panic!("no pop on Claire's socket: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_move_with_a_call_and_the_pop_latency_has_its_sample() {
    let scratch = Scratch::create().unwrap();
    let token = cti_token(&sqlite_url(scratch.path())).unwrap();
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(String::new()), &[])
        .await
        .unwrap();
    let port = fiche.http_port();
    let admin = admin_token(port).await.unwrap();
    let body = json!({"login": "claire", "display_name": "Claire", "role": "agent",
                      "extensions": ["201"], "password": "a-long-password"})
    .to_string();
    let (status, answer) = http::request(port, "POST", "/api/users", Some(&admin), Some(&body))
        .await
        .unwrap();
    assert_eq!(status, 201, "{answer}");
    let claire = fiche_e2e::auth::login(port, "claire", "a-long-password")
        .await
        .unwrap();
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {claire}").parse().unwrap());
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("connecting /ws in time")
    .expect("Claire's socket opens");

    // The server counts a socket once its upgrade is done, which may come just
    // after the client has read the 101: scrape until it shows (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let before = loop {
        let scrape = metrics(port, &[]).await;
        let sockets = value(&scrape, "fiche_websockets", &[("role", "agent")]);
        if sockets == 1.0 || tokio::time::Instant::now() >= deadline {
            assert_eq!(sockets, 1.0, "Claire's page");
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(value(&before, "fiche_ami_connection_state", &[]), 0.0);

    // A call for Claire, answered, hung up; a datagram that is not HEP.
    let call = |event: &str| json!({"event": event, "callId": "m1"});
    let new_call = json!({"event": "newCall", "direction": "in", "from": "0611223344",
                          "to": "0140000000", "callId": "m1", "user": ["201"]});
    assert_eq!(cti(port, &token, new_call).await.unwrap(), 200);
    let pop = wait_for_pop(&mut socket).await;
    assert_eq!(pop["extension"], "201");
    let mut answer = call("answer");
    answer["answeringNumber"] = json!("201");
    assert_eq!(cti(port, &token, answer).await.unwrap(), 200);
    let mut hangup = call("hangup");
    hangup["cause"] = json!("normalClearing");
    assert_eq!(cti(port, &token, hangup).await.unwrap(), 200);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(b"not a HEP packet", ("127.0.0.1", fiche.hep_port()))
        .await
        .unwrap();

    // The hangup's reply came after its commit: the counters are there now,
    // except the datagram's, read by another task: wait for it (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = metrics(port, &[]).await;
        let malformed = ("reason", "malformed");
        if value(&after, "fiche_hep_packets_dropped_total", &[malformed]) >= 1.0
            || tokio::time::Instant::now() > deadline
        {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        value(&after, metric, labels) - value(&before, metric, labels)
    };
    assert_eq!(
        moved("fiche_calls_started_total", &[("source", "cti")]),
        1.0
    );
    assert_eq!(
        moved(
            "fiche_calls_total",
            &[("source", "cti"), ("outcome", "answered")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "fiche_calls_total",
            &[("source", "cti"), ("outcome", "missed")]
        ),
        0.0
    );
    assert_eq!(moved("fiche_pops_sent_total", &[]), 1.0, "Claire's pop");
    assert_eq!(
        moved(
            "fiche_hep_packets_dropped_total",
            &[("reason", "malformed")]
        ),
        1.0
    );
    assert_eq!(
        moved("fiche_pop_latency_seconds_count", &[]),
        1.0,
        "one pop, one latency sample"
    );
    let latency = buckets(&after, "fiche_pop_latency_seconds");
    assert_eq!(
        latency.last().map(|(le, n)| (le.is_infinite(), *n)),
        Some((true, 1.0)),
        "{latency:?}"
    );
    let sum = value(&after, "fiche_pop_latency_seconds_sum", &[]);
    assert!(
        (0.0..5.0).contains(&sum),
        "a pop on loopback takes well under 5 s: {sum}"
    );
    assert!(
        moved("fiche_ticket_writer_batch_size_count", &[]) >= 1.0,
        "the call's events were written"
    );
    assert!(
        fiche
            .log_text()
            .lines()
            .any(|l| l.contains("fiche::access") && l.contains("/metrics")),
        "scrapes are in the access log"
    );
    drop(socket);
}

/// Scrapes until `done` holds (bounded); the last scrape.
async fn metrics_until(port: u16, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let scraped = metrics(port, &[]).await;
        if done(&scraped) {
            return scraped;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_ami_connection_state_follows_the_manager() {
    let server = AmiTestServer::start(AmiServerOptions::default(), AmiScript::default())
        .await
        .unwrap();
    let scratch = Scratch::create().unwrap();
    let setup = AmiSetup::Env {
        addr: server.addr().to_string(),
        username: "fiche".to_owned(),
        secret: "s3cret".to_owned(),
    };
    let fiche = FicheProcess::start(&scratch, "fiche", &setup, &[])
        .await
        .unwrap();
    let port = fiche.http_port();
    let state = |scrape: &Scrape, state: &str| {
        value(
            scrape,
            "fiche_ami_connection_state",
            &[("pbx", "asterisk"), ("state", state)],
        )
    };
    let up = metrics_until(port, "logged in", |m| state(m, "logged_in") == 1.0).await;
    assert_eq!(state(&up, "disconnected") + state(&up, "connecting"), 0.0);
    assert_eq!(
        value(
            &up,
            "fiche_ami_connection_losses_total",
            &[("pbx", "asterisk")]
        ),
        0.0
    );

    // The manager goes away: the state says so, and the loss is counted.
    server.stop().await;
    let down = metrics_until(port, "connection lost", |m| {
        state(m, "logged_in") == 0.0
            && value(
                m,
                "fiche_ami_connection_losses_total",
                &[("pbx", "asterisk")],
            ) >= 1.0
    })
    .await;
    assert_eq!(
        state(&down, "disconnected") + state(&down, "connecting"),
        1.0,
        "one state at a time"
    );
}

#[tokio::test]
async fn a_webhook_target_that_is_down_shows_in_its_outbox_depth_and_failures() {
    // A port nobody listens on: every attempt is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port_down = closed.local_addr().unwrap().port();
    drop(closed);
    let scratch = Scratch::create().unwrap();
    let token = cti_token(&sqlite_url(scratch.path())).unwrap();
    let toml =
        format!("[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:{port_down}/hook\"\n");
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(toml), &[])
        .await
        .unwrap();
    let port = fiche.http_port();
    let new_call = json!({"event": "newCall", "direction": "in", "from": "0611223344",
                          "to": "0140000000", "callId": "w1", "user": ["201"]});
    assert_eq!(cti(port, &token, new_call).await.unwrap(), 200);
    let crm = [("target", "crm")];
    let scraped = metrics_until(port, "a failed delivery", |m| {
        value(
            m,
            "fiche_webhook_delivery_failures_total",
            &[("target", "crm"), ("kind", "retried")],
        ) >= 1.0
    })
    .await;
    // The reply came once the deliveries were stored: call_started, ringing.
    assert!(
        value(&scraped, "fiche_webhook_outbox_depth", &crm) >= 2.0,
        "{:?}",
        find(&scraped, "fiche_webhook_outbox_depth", &crm)
    );
    assert_eq!(value(&scraped, "fiche_webhook_deliveries_total", &crm), 0.0);
    assert_eq!(
        value(
            &scraped,
            "fiche_webhook_delivery_failures_total",
            &[("target", "crm"), ("kind", "refused")]
        ),
        0.0
    );
}

#[tokio::test]
async fn a_configured_metrics_token_is_always_required_and_never_logged() {
    let scratch = Scratch::create().unwrap();
    let fiche = FicheProcess::start(
        &scratch,
        "fiche",
        &AmiSetup::Toml(String::new()),
        &[("FICHE_METRICS_TOKEN", TOKEN.to_owned())],
    )
    .await
    .unwrap();
    let port = fiche.http_port();
    // From loopback, the test's only honest vantage point: with a token
    // configured, being on loopback is not enough.
    let (status, body) = scrape(port, &[]).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("fiche_calls"), "{body}");
    let wrong = format!("Bearer {TOKEN}x");
    let (status, _) = scrape(port, &[("Authorization", &wrong)]).await.unwrap();
    assert_eq!(status, 401);
    // A session token is not the metrics token.
    let admin = admin_token(port).await.unwrap();
    let session = format!("Bearer {admin}");
    let (status, _) = scrape(port, &[("Authorization", &session)]).await.unwrap();
    assert_eq!(status, 401);

    let good = format!("Bearer {TOKEN}");
    let scraped = metrics(port, &[("Authorization", &good)]).await;
    assert!(
        find(&scraped, "fiche_pops_sent_total", &[]).is_some(),
        "{:?}",
        scraped.samples.len()
    );
    let log = fiche.log_text();
    assert!(!log.contains(TOKEN), "the token is never logged");
    assert!(
        !format!("{:?}", check_config(&scratch)).contains(TOKEN),
        "nor printed by check-config"
    );
}

/// `fiche check-config` with the metrics token set: what it prints.
fn check_config(scratch: &Scratch) -> String {
    let output = std::process::Command::new(fiche_binary().unwrap())
        .arg("check-config")
        .env("FICHE_METRICS_TOKEN", TOKEN)
        .env("FICHE_DATABASE_URL", sqlite_url(scratch.path()))
        .env_remove("FICHE_CONFIG")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn without_a_token_a_scrape_relayed_by_a_proxy_is_refused() {
    let scratch = Scratch::create().unwrap();
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(String::new()), &[])
        .await
        .unwrap();
    let port = fiche.http_port();
    // nginx on the same host connects from loopback on behalf of anyone.
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        let (status, body) = scrape(port, &[(header, "203.0.113.9")]).await.unwrap();
        assert_eq!(status, 403, "{header}: {body}");
    }
    let (status, _) = scrape(port, &[]).await.unwrap();
    assert_eq!(status, 200, "a direct request from loopback");
}

/// `fiche backup ARGS` on the database at `url`: exit success, stdout, stderr.
fn backup(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(fiche_binary().unwrap())
        .arg("backup")
        .args(args)
        .env("FICHE_DATABASE_URL", url)
        .env_remove("FICHE_CONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The caller number of missed call `i` (each gets its own callback ticket).
fn number(i: usize) -> String {
    format!("06{i:08}")
}

#[tokio::test]
async fn a_backup_taken_under_write_load_restores_every_ticket_committed_before_it() {
    let scratch = Scratch::create().unwrap();
    let url = sqlite_url(scratch.path());
    let token = cti_token(&url).unwrap();
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(String::new()), &[])
        .await
        .unwrap();
    let port = fiche.http_port();

    // Two writers place missed calls from new numbers, back to back: each
    // hangup's reply means its call and callback ticket are committed.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (acknowledged, stop, token) = (acknowledged.clone(), stop.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let mut i = writer;
            while !stop.is_cancelled() && i < 2_000 {
                let id = format!("b{i}");
                let new_call = json!({"event": "newCall", "direction": "in", "from": number(i),
                                      "to": "0140000000", "callId": id, "user": ["201"]});
                let hangup = json!({"event": "hangup", "callId": id, "cause": "cancel"});
                if cti(port, &token, new_call).await? == 200
                    && cti(port, &token, hangup).await? == 200
                {
                    acknowledged
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .insert(i);
                }
                i += 2;
            }
            anyhow::Ok(())
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 20 {
        assert!(tokio::time::Instant::now() < deadline, "writers too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A copy during which at least one ticket was committed (a small
    // database copies in milliseconds: try again, boundedly, if none was).
    let mut taken = None;
    for attempt in 0..5 {
        let copy = scratch.path().join(format!("copy-{attempt}.db"));
        let committed_before: BTreeSet<usize> = acknowledged.lock().unwrap().clone();
        let copy_arg = copy.display().to_string();
        let (ok, out, err) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || backup(&url, &[&copy_arg])
        })
        .await
        .unwrap();
        assert!(ok, "fiche backup failed: {err}");
        assert!(out.contains(&format!("copy-{attempt}.db")), "{out}");
        let during = acknowledged.lock().unwrap().len() - committed_before.len();
        if during > 0 {
            taken = Some((copy, committed_before));
            break;
        }
    }
    let (copy, committed_before) = taken.expect("no ticket was written while a backup ran");
    // Keep writing a little after the copy, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let total = acknowledged.lock().unwrap().len();

    // Never over an existing file, unless told.
    let (ok, _, err) = backup(&url, &[&copy.display().to_string()]);
    assert!(!ok && err.contains("--force"), "{err}");

    // Restore: the copy alone in a new folder, opened by `fiche serve`.
    let restored = Scratch::create().unwrap();
    std::fs::copy(&copy, restored.path().join("fiche.db")).unwrap();
    let second = FicheProcess::start(&restored, "restored", &AmiSetup::Toml(String::new()), &[])
        .await
        .unwrap();
    let admin = admin_token(second.http_port()).await.unwrap();
    let mut numbers = BTreeSet::new();
    let mut offset = 0;
    loop {
        let path = format!("/api/tickets?limit=500&offset={offset}&status=open");
        let (status, body) = http::get_as(second.http_port(), &path, &admin)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let page: Json = serde_json::from_str(&body).unwrap();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            if let Some(phone) = item["phone_e164"].as_str() {
                numbers.insert(phone.to_owned());
            }
        }
        offset += items.len();
        if items.is_empty() {
            break;
        }
    }
    let missing: Vec<usize> = committed_before
        .iter()
        .copied()
        .filter(|i| !numbers.contains(&format!("+336{i:08}")))
        .collect();
    assert!(
        missing.is_empty(),
        "tickets committed before the backup and missing from it: {missing:?} (restored {})",
        numbers.len()
    );
    assert!(numbers.len() <= total, "no ticket from nowhere");
    drop(fiche);
}

#[tokio::test]
async fn backup_of_a_postgresql_configuration_points_to_pg_dump() {
    let scratch = Scratch::create().unwrap();
    let copy = scratch.path().join("copy.db");
    let (ok, _, err) = backup(
        "postgres://fiche:s3cret@127.0.0.1:5432/fiche",
        &[&copy.display().to_string()],
    );
    assert!(!ok);
    assert!(err.contains("pg_dump"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the password is not printed: {err}"
    );
    assert!(!copy.exists());
    // A SQLite file that does not exist is not silently created and copied.
    let missing = format!("sqlite://{}/missing.db", scratch.path().display());
    let (ok, _, err) = backup(&missing, &[&copy.display().to_string()]);
    assert!(!ok, "{err}");
    assert!(!scratch.path().join("missing.db").exists());
    assert!(!copy.exists());
}
