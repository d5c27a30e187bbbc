//! `fiche demo` through the binary, nothing else installed: it fills its
//! throwaway database with the demo company, its simulated phone system's
//! calls go through the real HEP listener and make live calls, tickets and
//! callbacks (a repeated missed caller's callback counts two attempts), and
//! it listens on loopback only whatever the configuration says.
//!
//! Nothing installed.

use anyhow::bail;
use fiche_e2e::auth::login;
use fiche_e2e::fiche_ami::Scratch;
use fiche_e2e::http;
use fiche_e2e::process::Process;
use fiche_e2e::testbed::fiche_binary;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Hard bound of one demo process.
const DEMO_LIMIT: Duration = Duration::from_secs(150);
/// How long start-up (database filled, passwords hashed) may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Long enough for the longest missed ring (18 s) and the ticket writer.
const CALL_TIMEOUT: Duration = Duration::from_secs(45);

/// A running `fiche demo`: its log, HTTP port and printed passwords.
struct Demo {
    process: Process,
    port: u16,
    passwords: HashMap<String, String>,
}

impl Demo {
    fn log(&self) -> String {
        std::fs::read_to_string(self.process.log()).unwrap_or_default()
    }

    async fn token(&self, who: &str) -> String {
        let password = self.passwords.get(who).expect("a printed password");
        login(self.port, who, password)
            .await
            .unwrap_or_else(|e| panic!("{who} logs in with the printed password: {e}"))
    }
}

/// The port of the log line containing `what` (`addr=Some(IP:PORT)`), and its IP.
fn bound(log: &str, what: &str) -> Option<(String, u16)> {
    let line = log.lines().find(|line| line.contains(what))?;
    let (_, rest) = line.split_once("addr=Some(")?;
    let (addr, _) = rest.split_once(')')?;
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    Some((addr.ip().to_string(), addr.port()))
}

/// The banner's table: `    login      password      what`.
fn passwords(log: &str) -> HashMap<String, String> {
    log.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let login = words.next()?;
            let password = words.next()?;
            ["claire", "nadia", "mathilde", "admin"]
                .contains(&login)
                .then(|| (login.to_owned(), password.to_owned()))
        })
        .collect()
}

async fn start(scratch: &Scratch, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Demo> {
    let mut env: Vec<(&str, String)> = vec![
        ("NO_COLOR", "1".into()),
        ("FICHE_LOG", "info".into()),
        // What a production setup would say: the demo must not follow it.
        ("FICHE_AMI_ADDR", String::new()),
        (
            "FICHE_DATABASE_URL",
            "postgres://nowhere.invalid/prod".into(),
        ),
    ];
    env.extend(envs.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut all = vec!["demo".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let log = scratch.path().join("demo.log");
    let mut process = Process::spawn(
        "fiche-demo",
        &fiche_binary()?,
        &all,
        &env,
        scratch.path(),
        &log,
        DEMO_LIMIT,
    )?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some((_, port)) = bound(&text, "HTTP listening") {
            if let Ok((200, _)) = http::get(port, "/healthz").await {
                let passwords = passwords(&text);
                return Ok(Demo {
                    process,
                    port,
                    passwords,
                });
            }
        }
        if process.try_status().is_some() || Instant::now() >= deadline {
            bail!(
                "fiche demo did not start; its log:\n{}",
                process.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(port: u16, token: &str, path: &str) -> Value {
    let (status, body) = http::get_as(port, path, token)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().cloned().unwrap_or_default()
}

/// `POST /api/demo/calls` as `token`: the status and the answer.
async fn simulate(port: u16, token: &str) -> (u16, Value) {
    let (status, body) = http::request(port, "POST", "/api/demo/calls", Some(token), None)
        .await
        .expect("POST /api/demo/calls");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls `check` every 500 ms until it gives a value or `limit` passes.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_demo_fills_its_database_and_its_calls_make_tickets_and_callbacks() {
    let scratch = Scratch::create().expect("scratch folder");
    // A production address in the environment: the demo moves it to loopback.
    let demo = start(
        &scratch,
        &[],
        &[
            ("FICHE_HTTP_ADDR", "0.0.0.0:0"),
            ("FICHE_HEP_ADDR", "0.0.0.0:9060"),
        ],
    )
    .await
    .expect("fiche demo starts");
    let log = demo.log();
    assert_eq!(
        bound(&log, "HTTP listening").map(|(ip, _)| ip).as_deref(),
        Some("127.0.0.1"),
        "{log}"
    );
    let (hep_ip, hep_port) = bound(&log, "HEP UDP listening").expect("HEP bound");
    assert_eq!(hep_ip, "127.0.0.1", "{log}");
    assert_ne!(hep_port, 9060, "the demo's HEP port is its own");
    assert!(log.contains("is not loopback"), "a warning says so:\n{log}");
    assert!(
        log.contains(&format!("http://127.0.0.1:{}/", demo.port)),
        "the address is printed:\n{log}"
    );
    assert_eq!(demo.passwords.len(), 4, "every login's password: {log}");

    let port = demo.port;
    let admin = demo.token("admin").await;
    let claire = demo.token("claire").await;
    let me = get(port, &claire, "/api/me").await;
    assert_eq!(me["demo"], true, "{me}");
    assert_eq!(me["extensions"], serde_json::json!(["201"]), "{me}");
    let me = get(port, &demo.token("nadia").await, "/api/me").await;
    assert_eq!(me["extensions"], serde_json::json!(["202"]), "{me}");
    let mathilde = demo.token("mathilde").await;
    let me = get(port, &mathilde, "/api/me").await;
    assert_eq!(me["role"], "supervisor", "{me}");

    // The company: customers with their history.
    let customers = get(port, &admin, "/api/customers?limit=100").await;
    assert!(customers["total"].as_u64() >= Some(8), "{customers}");
    let bernard = get(port, &admin, "/api/customers/lookup?number=0261911234").await;
    assert!(bernard.to_string().contains("Sophie Bernard"), "{bernard}");
    let tickets = items(&get(port, &admin, "/api/tickets?limit=100").await);
    assert!(
        tickets
            .iter()
            .any(|t| t["status"] == "open" && t["kind"] == "call"),
        "open tickets in the history: {tickets:#?}"
    );
    let quote = tickets
        .iter()
        .find(|t| t["subject"].as_str().is_some_and(|s| s.contains("ballon")))
        .unwrap_or_else(|| panic!("Sophie Bernard's quote: {tickets:#?}"));
    let quote = get(port, &admin, &format!("/api/tickets/{}", quote["id"])).await;
    assert!(
        quote.to_string().contains("relancer vendredi"),
        "tickets carry their notes: {quote}"
    );
    let overdue = items(&get(port, &admin, "/api/tickets?kind=callback&overdue=true").await);
    assert!(
        overdue
            .iter()
            .any(|t| t["customer_name"] == "Nathalie Moreau"),
        "an overdue callback on the board: {overdue:#?}"
    );
    let history = get(port, &admin, "/api/calls?limit=100").await;
    assert!(
        history["total"].as_u64() >= Some(8),
        "past calls: {history}"
    );

    // Only the admin simulates calls.
    assert_eq!(simulate(port, &claire).await.0, 403);
    assert_eq!(simulate(port, &mathilde).await.0, 403);
    // Ask until a customer's answered call and both missed calls of the
    // regular caller are placed (the timer places calls too).
    let mut placed: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..10 {
        let (status, answer) = simulate(port, &admin).await;
        assert_eq!(status, 202, "{answer}");
        let ids = answer["call_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        placed
            .entry(answer["scenario"].as_str().unwrap_or_default().to_owned())
            .or_insert(ids);
        if ["known_answered", "known_missed", "repeat_missed"]
            .iter()
            .all(|s| placed.contains_key(*s))
        {
            break;
        }
    }
    let answered = placed["known_answered"][0].clone();

    // The call rings through the live table.
    until(
        Duration::from_secs(10),
        "the answered call in /api/calls/live",
        || {
            let admin = admin.clone();
            let answered = answered.clone();
            async move {
                let live = get(port, &admin, "/api/calls/live").await;
                live.as_array()?
                    .iter()
                    .any(|call| call["id"] == answered.as_str() && call["source"] == "hep")
                    .then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", demo.log()));

    // The regular caller missed twice: one callback, two attempts.
    let callback = until(
        CALL_TIMEOUT,
        "the regular caller's callback, 2 attempts",
        || {
            let admin = admin.clone();
            async move {
                let open =
                    items(&get(port, &admin, "/api/tickets?kind=callback&status=open").await);
                open.into_iter().find(|t| {
                    t["phone_e164"] == "+33261917788" && t["attempts"].as_i64() >= Some(2)
                })
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", demo.log()));
    assert_eq!(callback["customer_name"], "Thomas Garnier", "{callback}");

    // The answered call has its ticket, once it is over: its own, or, when the
    // caller is the customer with an overdue callback, that callback, which the
    // call closed by reaching her (a "reached" event naming the call).
    let ticket = until(CALL_TIMEOUT, "the answered call's ticket", || {
        let admin = admin.clone();
        let answered = answered.clone();
        async move {
            let own = items(&get(port, &admin, "/api/tickets?kind=call&limit=100").await)
                .into_iter()
                .find(|t| t["call_id"] == answered.as_str());
            if own.is_some() {
                return own;
            }
            let closed = "/api/tickets?kind=callback&status=closed&limit=100";
            for callback in items(&get(port, &admin, closed).await) {
                let detail = get(port, &admin, &format!("/api/tickets/{}", callback["id"])).await;
                let reached = detail["events"].as_array().is_some_and(|events| {
                    events
                        .iter()
                        .any(|e| e["kind"] == "reached" && e["call_id"] == answered.as_str())
                });
                if reached {
                    return Some(callback);
                }
            }
            None
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", demo.log()));
    assert!(
        ticket["customer_name"].is_string(),
        "a customer's call: {ticket}"
    );
}

#[tokio::test]
async fn the_demo_refuses_to_listen_beyond_loopback() {
    let scratch = Scratch::create().expect("scratch folder");
    let log = scratch.path().join("refused.log");
    let mut process = Process::spawn(
        "fiche-demo-refused",
        &fiche_binary().expect("binary"),
        &["demo".into(), "--http".into(), "0.0.0.0:0".into()],
        &[("NO_COLOR", "1".into())],
        scratch.path(),
        &log,
        Duration::from_secs(30),
    )
    .expect("spawn");
    let status = process
        .wait(Duration::from_secs(20))
        .await
        .expect("exits at once");
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("boucle locale"), "{text}");
    assert!(!text.contains("HTTP listening"), "{text}");
}

/// Outside `fiche demo` the route does not exist, and `/api/me` says so.
#[tokio::test]
async fn serve_has_no_simulated_calls() {
    use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess};
    let scratch = Scratch::create().expect("scratch folder");
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(String::new()), &[])
        .await
        .expect("fiche serve");
    let token = fiche_e2e::auth::admin_token(fiche.http_port())
        .await
        .expect("admin");
    let (status, body) = simulate(fiche.http_port(), &token).await;
    assert_eq!(status, 404, "{body}");
    let me = fiche.get_json("/api/me").await.expect("me");
    assert_eq!(me["demo"], false, "{me}");
}

/// `--database` keeps the demo: a second start finds the company (nothing
/// doubled) and gives the logins new passwords; a database holding other
/// accounts is refused, untouched.
#[tokio::test]
async fn a_kept_demo_database_is_reused_and_a_foreign_one_refused() {
    let scratch = Scratch::create().expect("scratch folder");
    let url = format!("sqlite://{}/kept.db", scratch.path().display());
    let args = ["--http", "127.0.0.1:0", "--database", url.as_str()];
    let mut first = start(&scratch, &args, &[]).await.expect("first start");
    let old_password = first.passwords["admin"].clone();
    first.process.stop();

    let second = start(&scratch, &args, &[]).await.expect("second start");
    let new_password = second.passwords["admin"].clone();
    assert_ne!(old_password, new_password);
    assert!(login(second.port, "admin", &old_password).await.is_err());
    let admin = second.token("admin").await;
    let customers = get(second.port, &admin, "/api/customers?limit=100").await;
    assert_eq!(
        customers["total"], 8,
        "the company is not doubled: {customers}"
    );
    drop(second);

    let foreign = format!("sqlite://{}/prod.db", scratch.path().display());
    let mut add = std::process::Command::new(fiche_binary().expect("binary"))
        .args(["user", "add", "bob", "--role", "admin"])
        .env("FICHE_DATABASE_URL", &foreign)
        .env_remove("FICHE_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fiche user add");
    if let Some(mut stdin) = add.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(b"a-long-password\n")
            .expect("password on stdin");
    }
    assert!(add.wait().expect("user add ends").success());
    let log = scratch.path().join("foreign.log");
    let mut refused = Process::spawn(
        "fiche-demo-foreign",
        &fiche_binary().expect("binary"),
        &[
            "demo".into(),
            "--http".into(),
            "127.0.0.1:0".into(),
            "--database".into(),
            foreign,
        ],
        &[("NO_COLOR", "1".into())],
        scratch.path(),
        &log,
        Duration::from_secs(30),
    )
    .expect("spawn");
    let status = refused.wait(Duration::from_secs(20)).await.expect("exits");
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("base vide"), "{text}");
}
