//! Several `fiche serve` nodes on one PostgreSQL database (issue 15), as real
//! processes: calls seen by one node pop at agents connected to another; the
//! same SIP mirrored to both nodes is one call, one ticket, one pop per agent,
//! one webhook delivery and one Odoo ticket; the node holding the AMI connection killed with
//! SIGKILL mid-call is replaced within 10 s; a node killed under load leaves
//! every call with exactly one ticket.
//!
//! Calls over HEP are `fiche demo`'s scripts (`fiche_server::demo::scenario`:
//! SIP as a Kamailio proxy mirrors it), sent as HEP v3 datagrams from here.

use fiche_e2e::ami_server::{AmiScript, AmiServerOptions, AmiTestServer};
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::odoo::{Helpdesk, OdooSpec, TestOdoo};
use fiche_e2e::pg::PgSchema;
use fiche_e2e::testbed::fiche_binary;
use fiche_e2e::{auth, http, webhook_receiver};
use fiche_server::demo::phone::hep_datagram;
use fiche_server::demo::scenario::{self, Caller, Scenario, Timing};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Bound of any wait in these tests.
const GUARD: Duration = Duration::from_secs(30);
/// The issue's promise: the AMI connection moves within this after a crash.
const TAKEOVER: Duration = Duration::from_secs(10);
const PASSWORD: &str = "agent-password-1";

/// A node of the cluster: `fiche serve` on the shared schema.
async fn node(
    scratch: &Scratch,
    name: &str,
    db: &PgSchema,
    config: &str,
    extra: &[(&'static str, String)],
) -> FicheProcess {
    let mut env = vec![
        ("FICHE_DATABASE_URL", db.url.clone()),
        ("FICHE_CLUSTER_NODE", name.to_owned()),
    ];
    env.extend(extra.iter().cloned());
    FicheProcess::start(scratch, name, &AmiSetup::Toml(config.to_owned()), &env)
        .await
        .unwrap_or_else(|e| panic!("starting node {name}: {e:#}"))
}

/// Creates agent `login` with `extension` through `port` (any node: users
/// are in the database).
async fn agent(port: u16, login: &str, extension: &str) {
    let admin = auth::admin_token(port).await.expect("admin login");
    let body = json!({
        "login": login, "password": PASSWORD, "role": "agent",
        "display_name": login, "extensions": [extension],
    })
    .to_string();
    let (status, answer) = http::request(port, "POST", "/api/users", Some(&admin), Some(&body))
        .await
        .expect("POST /api/users");
    assert_eq!(status, 201, "{answer}");
}

/// An agent's page: `/ws` on one node, every message kept.
struct Page {
    messages: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Page {
    async fn open(port: u16, login: &str) -> Page {
        let token = auth::login(port, login, PASSWORD)
            .await
            .expect("agent login");
        let mut request = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .expect("ws request");
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (socket, _) = tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(request))
            .await
            .expect("ws connect in time")
            .expect("ws connect");
        let (mut outgoing, mut incoming) = socket.split();
        let (tx, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = incoming.next().await {
                if let Message::Text(text) = message {
                    if let Ok(value) = serde_json::from_str::<Value>(&text) {
                        if value["type"] == "ping" {
                            let _ = outgoing
                                .send(Message::Text(r#"{"type":"pong"}"#.into()))
                                .await;
                        }
                        let _ = tx.send(value);
                    }
                }
            }
        });
        let mut page = Page {
            messages,
            seen: Vec::new(),
        };
        page.until(|m| m["type"] == "snapshot").await;
        page
    }

    /// Waits for a message `matches` says yes to; panics after [`GUARD`].
    async fn until(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|m| matches(m)) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(message)) => {
                    self.seen.push(message.clone());
                    if matches(&message) {
                        return message;
                    }
                }
                _ => panic!("no such message in time; got {:#?}", self.seen),
            }
        }
    }

    /// Everything received within `quiet` more.
    async fn settle(&mut self, quiet: Duration) {
        while let Ok(Some(message)) = tokio::time::timeout(quiet, self.messages.recv()).await {
            self.seen.push(message);
        }
    }

    fn count(&self, matches: impl Fn(&Value) -> bool) -> usize {
        self.seen.iter().filter(|m| matches(m)).count()
    }
}

/// Plays a demo scenario as HEP to every address of `to`, at its pace.
async fn play(script: &scenario::Script, to: &[SocketAddr]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
    let start = tokio::time::Instant::now();
    for step in &script.steps {
        tokio::time::sleep_until(start + step.at).await;
        let datagram = hep_datagram(&step.packet, None).expect("HEP encoding");
        for addr in to {
            socket.send_to(&datagram, addr).await.expect("HEP sent");
        }
    }
}

fn hep(node: &FicheProcess) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], node.hep_port()))
}

fn caller() -> Caller {
    Caller {
        number: "0612345678".into(),
        display: "Dupont Marie".into(),
    }
}

fn timing(ring_ms: u64, talk_ms: u64) -> Timing {
    Timing {
        ring: Duration::from_millis(ring_ms),
        talk: Duration::from_millis(talk_ms),
    }
}

/// Rows of `sql` (one text or number column, then a count) in the schema.
async fn query_pairs(db: &PgSchema, sql: &str) -> Vec<(String, i64)> {
    let pool = sqlx::PgPool::connect(&db.url).await.expect("PostgreSQL");
    let rows: Vec<(String, i64)> = sqlx::query_as(sql)
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
    rows
}

/// Waits until `check` holds, or panics with `what` after [`GUARD`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + GUARD;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {GUARD:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `fiche cluster status` on the shared database.
fn cluster_status(db: &PgSchema) -> String {
    let output = std::process::Command::new(fiche_binary().expect("the fiche binary"))
        .args(["cluster", "status"])
        .env("FICHE_DATABASE_URL", &db.url)
        .env("FICHE_AGENT_EXTENSIONS", r"2\d\d")
        .output()
        .expect("running fiche cluster status");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

async fn health(node: &FicheProcess) -> Value {
    let (status, body) = http::get(node.http_port(), "/healthz")
        .await
        .expect("GET /healthz");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn holds(health: &Value, lease: &str) -> bool {
    health["leases"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == lease))
}

#[tokio::test]
async fn a_call_seen_by_node_a_pops_on_node_b_and_is_withdrawn_when_an_agent_on_a_answers() {
    let db = PgSchema::create("cluster_pop").await;
    let scratch = Scratch::create().expect("scratch");
    let a = node(&scratch, "a", &db, "", &[]).await;
    let b = node(&scratch, "b", &db, "", &[]).await;
    agent(a.http_port(), "claire", "201").await;
    agent(a.http_port(), "nadia", "202").await;
    // Claire's browser is on node B, Nadia's on node A.
    let mut claire = Page::open(b.http_port(), "claire").await;
    let mut nadia = Page::open(a.http_port(), "nadia").await;

    // Ring group 201+202; Nadia answers. The SIP reaches node A only.
    let script = scenario::script(
        Scenario::GroupAnswered,
        "pop-b",
        &caller(),
        timing(1500, 500),
    );
    play(&script, &[hep(&a)]).await;

    let pop = claire.until(|m| m["type"] == "pop").await;
    assert_eq!(pop["extension"], "201", "{pop:#}");
    assert_eq!(pop["call"]["caller"]["name"], "Dupont Marie", "{pop:#}");
    let call_id = pop["call"]["id"].clone();
    let withdrawn = claire
        .until(|m| m["type"] == "withdrawn" && m["call_id"] == call_id)
        .await;
    assert_eq!(withdrawn["answered_by"], "202", "{withdrawn:#}");
    nadia.until(|m| m["type"] == "pop").await;
    claire.settle(Duration::from_millis(500)).await;
    assert_eq!(
        claire.count(|m| m["type"] == "pop"),
        1,
        "{:#?}",
        claire.seen
    );

    // Node B's live table knows the call it never saw, ended.
    eventually(
        "node B's call log shows the call answered by 202",
        || async {
            let live = b.live_calls().await.unwrap_or_default();
            live.iter()
                .any(|c| c["id"] == call_id && c["state"] == "ended" && c["answered_by"] == "202")
        },
    )
    .await;
    drop((a, b));
    db.drop_schema().await;
}

#[tokio::test]
async fn the_same_call_mirrored_to_two_nodes_is_one_call_one_ticket_one_pop_and_one_webhook() {
    let db = PgSchema::create("cluster_once").await;
    let scratch = Scratch::create().expect("scratch");
    let mut receiver = webhook_receiver::plain(0).await.expect("webhook receiver");
    let odoo = TestOdoo::start(OdooSpec::v17(Helpdesk::Enterprise))
        .await
        .expect("Odoo test server");
    let spec = odoo.spec();
    let config = format!(
        "[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:{}/hook\"\nmax_backoff_secs = 1\n\n\
         [odoo]\nurl = \"{}\"\ndatabase = \"{}\"\nlogin = \"{}\"\npoll_interval_secs = 1\n",
        receiver.port,
        odoo.url(),
        spec.database,
        spec.login
    );
    let key = [("FICHE_ODOO_API_KEY", spec.api_key.clone())];
    let a = node(&scratch, "a", &db, &config, &key).await;
    let b = node(&scratch, "b", &db, &config, &key).await;
    agent(a.http_port(), "claire", "201").await;
    agent(a.http_port(), "nadia", "202").await;
    let mut claire = Page::open(b.http_port(), "claire").await;
    let mut nadia = Page::open(a.http_port(), "nadia").await;

    let script = scenario::script(
        Scenario::GroupAnswered,
        "twice",
        &caller(),
        timing(800, 800),
    );
    play(&script, &[hep(&a), hep(&b)]).await;

    let pop = claire.until(|m| m["type"] == "pop").await;
    nadia.until(|m| m["type"] == "pop").await;
    let call_id = pop["call"]["id"].as_str().expect("call id").to_owned();
    // Every delivery: call_started, ringing ×2, answered, ended, and the
    // ticket's changes; each event once.
    let mut deliveries = Vec::new();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !deliveries
        .iter()
        .any(|d: &Value| d["event"]["type"] == "ended")
    {
        match tokio::time::timeout_at(deadline, receiver.requests.recv()).await {
            Ok(Some(request)) => {
                deliveries.push(serde_json::from_str(&request.body).expect("JSON"))
            }
            _ => panic!("no `ended` delivery in time; got {deliveries:#?}"),
        }
    }
    // Late duplicates, if any, would come within a few backoffs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(request) = receiver.requests.try_recv() {
        deliveries.push(serde_json::from_str(&request.body).expect("JSON"));
    }
    claire.settle(Duration::from_millis(300)).await;
    nadia.settle(Duration::from_millis(300)).await;

    let call_events: Vec<String> = deliveries
        .iter()
        .map(|d| &d["event"])
        .filter(|e| e["call_id"] == call_id.as_str())
        .map(|e| {
            let kind = e["type"].as_str().unwrap_or("?");
            match e["extension"].as_str() {
                Some(ext) => format!("{kind} {ext}"),
                None => kind.to_owned(),
            }
        })
        .collect();
    let mut sorted = call_events.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        call_events.len(),
        "a delivery twice: {call_events:#?}"
    );
    assert!(
        call_events.iter().any(|e| e.starts_with("call_started")),
        "{call_events:#?}"
    );
    assert_eq!(
        claire.count(|m| m["type"] == "pop"),
        1,
        "{:#?}",
        claire.seen
    );
    assert_eq!(nadia.count(|m| m["type"] == "pop"), 1, "{:#?}", nadia.seen);

    let calls = query_pairs(
        &db,
        "SELECT source_key, count(*) FROM calls GROUP BY source_key",
    )
    .await;
    assert_eq!(calls.len(), 1, "one call: {calls:?}");
    let tickets = query_pairs(
        &db,
        "SELECT call_id::text, count(*) FROM tickets WHERE call_id IS NOT NULL GROUP BY call_id",
    )
    .await;
    assert_eq!(
        tickets,
        vec![(call_id.clone(), 1)],
        "one ticket for the call"
    );
    // And one help-desk ticket in Odoo, whichever node delivers.
    let marker = query_pairs(
        &db,
        "SELECT '[Fiche #' || id || ']', 1::bigint FROM tickets WHERE call_id IS NOT NULL",
    )
    .await[0]
        .0
        .clone();
    eventually("the call's ticket reaches Odoo", || async {
        !odoo.records("helpdesk.ticket").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let in_odoo = odoo.records("helpdesk.ticket");
    assert_eq!(in_odoo.len(), 1, "one Odoo ticket: {in_odoo:?}");
    assert!(
        in_odoo[0]["name"]
            .as_str()
            .is_some_and(|n| n.contains(&marker)),
        "{in_odoo:?}"
    );
    drop((a, b));
    db.drop_schema().await;
}

#[tokio::test]
async fn the_node_holding_the_ami_connection_killed_mid_call_is_replaced_within_ten_seconds() {
    let db = PgSchema::create("cluster_ami").await;
    let scratch = Scratch::create().expect("scratch");
    let server = AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::load("restart_answered").expect("AMI script"),
    )
    .await
    .expect("AMI test server");
    let config = format!(
        "[[ami]]\nname = \"paris\"\naddr = \"{}\"\nusername = \"fiche\"\nsecret = \"s3cret\"\n",
        server.addr()
    );
    // Node A starts first and takes the AMI connection and the writer.
    let a = node(&scratch, "a", &db, &config, &[]).await;
    agent(a.http_port(), "claire", "201").await;
    eventually("node A holds the AMI connection", || async {
        holds(&health(&a).await, "ami:paris")
    })
    .await;
    let b = node(&scratch, "b", &db, &config, &[]).await;
    assert!(
        !holds(&health(&b).await, "ami:paris"),
        "one holder at a time"
    );
    assert_eq!(
        server.logins(),
        1,
        "node B does not log in while A holds it"
    );

    // The call rings and is answered through node A; node B sees it.
    eventually("node B shows the call answered", || async {
        let live = b.live_calls().await.unwrap_or_default();
        live.len() == 1 && live[0]["state"] == "answered"
    })
    .await;
    let call_id = b.live_calls().await.expect("live calls")[0]["id"].clone();
    // A node that starts now (a page's node restarted) reads back the calls
    // in progress: its snapshot has the call.
    let c = node(&scratch, "c", &db, &config, &[]).await;
    let live = c.live_calls().await.expect("node C's live calls");
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(live[0]["id"], call_id);
    assert_eq!(live[0]["state"], "answered");
    // `fiche cluster status` names the three nodes and who holds what.
    let status = cluster_status(&db);
    for line in ["a ", "b ", "c "] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(line) && l.contains("actif")),
            "{status}"
        );
    }
    let a_line = status
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap_or_default();
    assert!(
        a_line.contains("ami:paris") && a_line.contains("writer"),
        "{status}"
    );
    drop(c);

    a.kill().await.expect("SIGKILL node A");
    let killed = Instant::now();
    // Claire's page, whose node died, reconnects through the proxy to node B:
    // its snapshot has her call, tracked by the node that died
    // (the PBX hangs up only once node B has logged in).
    let claire = Page::open(b.http_port(), "claire").await;
    let snapshot = &claire.seen[0];
    let calls = snapshot["calls"].as_array().cloned().unwrap_or_default();
    assert!(
        calls
            .iter()
            .any(|c| c["call"]["id"] == call_id && c["call"]["state"] == "answered"),
        "{snapshot:#}"
    );
    eventually("node B holds the AMI connection", || async {
        holds(&health(&b).await, "ami:paris")
    })
    .await;
    let took = killed.elapsed();
    assert!(took <= TAKEOVER, "took over in {took:?}");
    tokio::time::timeout(GUARD, server.ready_sessions(2))
        .await
        .expect("node B logs in and resyncs");

    // The PBX hangs up after the resync: the call ends, once, with one ticket.
    eventually("node B shows the call ended", || async {
        let live = b.live_calls().await.unwrap_or_default();
        live.iter()
            .any(|c| c["id"] == call_id && c["state"] == "ended")
    })
    .await;
    let live = b.live_calls().await.expect("live calls");
    assert_eq!(live.len(), 1, "no doubled call: {live:#?}");
    assert_eq!(live[0]["answered_by"], "201", "{live:#?}");
    let call_id = call_id.as_str().expect("call id").to_owned();
    eventually("the call's ticket is written", || async {
        let tickets = query_pairs(
            &db,
            "SELECT call_id::text, count(*) FROM tickets WHERE call_id IS NOT NULL GROUP BY call_id",
        )
        .await;
        tickets == vec![(call_id.clone(), 1)]
    })
    .await;
    // Node B writes the end once it holds the writer too.
    eventually("one call in the log, ended answered", || async {
        let calls = query_pairs(
            &db,
            "SELECT COALESCE(outcome, 'in progress'), count(*) FROM calls GROUP BY outcome",
        )
        .await;
        calls == vec![("answered".to_owned(), 1)]
    })
    .await;
    assert_eq!(server.logins(), 2);
    drop(b);
    db.drop_schema().await;
}

#[tokio::test]
async fn a_node_killed_under_load_leaves_every_call_with_exactly_one_ticket() {
    let db = PgSchema::create("cluster_load").await;
    let scratch = Scratch::create().expect("scratch");
    let a = node(&scratch, "a", &db, "", &[("FICHE_LOG", "info".into())]).await;
    let b = node(&scratch, "b", &db, "", &[("FICHE_LOG", "info".into())]).await;
    eventually("node A, started first, writes the tickets", || async {
        holds(&health(&a).await, "writer")
    })
    .await;
    // A second node under a live node's name stops at start.
    let same = std::process::Command::new(fiche_binary().expect("the fiche binary"))
        .arg("serve")
        .env("FICHE_DATABASE_URL", &db.url)
        .env("FICHE_CLUSTER_NODE", "b")
        .env("FICHE_HTTP_ADDR", "127.0.0.1:0")
        .env("FICHE_HEP_ADDR", "127.0.0.1:0")
        .env("FICHE_AGENT_EXTENSIONS", r"2\d\d")
        .output()
        .expect("running a second node b");
    assert!(!same.status.success());
    let said = String::from_utf8_lossy(&same.stderr);
    assert!(
        said.contains("another node of that name is alive"),
        "{said}"
    );
    let targets = [hep(&a), hep(&b)];
    // 100 calls a second for 6 s, each mirrored to both nodes; node A (which
    // holds the writer: it started first) is killed after 3 s.
    const RATE: u64 = 100;
    const SECONDS: u64 = 6;
    let mut plays = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    let mut kill = Some(a);
    for i in 0..RATE * SECONDS {
        tokio::time::sleep_until(start + Duration::from_millis(i * 1000 / RATE)).await;
        if i == RATE * SECONDS / 2 {
            if let Some(a) = kill.take() {
                a.kill().await.expect("SIGKILL node A");
            }
        }
        let script = scenario::script(
            Scenario::KnownAnswered,
            &format!("load-{i}"),
            &caller(),
            timing(300, 700),
        );
        plays.spawn(async move { play(&script, &targets).await });
    }
    while plays.join_next().await.is_some() {}
    let sent = usize::try_from(RATE * SECONDS).unwrap_or(usize::MAX);
    eventually("every call has ended in the call log", || async {
        let ended = query_pairs(
            &db,
            "SELECT 'ended', count(*) FROM calls WHERE ended_at IS NOT NULL",
        )
        .await;
        ended
            .first()
            .is_some_and(|(_, n)| usize::try_from(*n).unwrap_or(0) >= sent)
    })
    .await;
    let calls = query_pairs(
        &db,
        "SELECT source_key, count(*) FROM calls GROUP BY source_key",
    )
    .await;
    assert_eq!(calls.len(), sent, "every call once in the log");
    let tickets = query_pairs(
        &db,
        "SELECT c.source_key, count(t.id) FROM calls c LEFT JOIN tickets t ON t.call_id = c.id \
         GROUP BY c.source_key HAVING count(t.id) <> 1",
    )
    .await;
    assert!(
        tickets.is_empty(),
        "calls without exactly one ticket: {tickets:?}\n{}",
        b.log_tail(40)
    );
    drop(b);
    drop(kill);
    db.drop_schema().await;
}

#[tokio::test]
async fn click_to_call_from_an_agent_on_any_node_goes_through_the_node_holding_the_ami_connection()
{
    let db = PgSchema::create("cluster_dial").await;
    let scratch = Scratch::create().expect("scratch");
    let server = AmiTestServer::start(AmiServerOptions::default(), AmiScript::default())
        .await
        .expect("AMI test server");
    let config = format!(
        "[[ami]]\nname = \"paris\"\naddr = \"{}\"\nusername = \"fiche\"\nsecret = \"s3cret\"\n",
        server.addr()
    );
    let a = node(&scratch, "a", &db, &config, &[]).await;
    eventually("node A holds the AMI connection", || async {
        holds(&health(&a).await, "ami:paris")
    })
    .await;
    let b = node(&scratch, "b", &db, &config, &[]).await;
    agent(b.http_port(), "nadia", "202").await;
    let token = auth::login(b.http_port(), "nadia", PASSWORD)
        .await
        .expect("nadia's login");
    let dial = json!({ "number": "0612345678" }).to_string();
    let (status, body) = http::request(
        b.http_port(),
        "POST",
        "/api/calls/originate",
        Some(&token),
        Some(&dial),
    )
    .await
    .expect("click-to-call on node B");
    assert_eq!(status, 202, "{body}\n{}", b.log_tail(30));
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    let originates = server.originates();
    assert_eq!(originates.len(), 1, "one Originate, from the holder");
    assert!(
        originates[0]
            .iter()
            .any(|(k, v)| k == "Channel" && v == "PJSIP/202"),
        "{originates:?}"
    );
    assert_eq!(server.logins(), 1, "node B never logged in");
    // The call, heard by node A, is on node B's table under the id B answered.
    eventually("node B shows the click-to-call", || async {
        let live = b.live_calls().await.unwrap_or_default();
        live.iter()
            .any(|c| c["id"] == answer["call_id"] && c["direction"] == "outbound")
    })
    .await;
    drop((a, b));
    db.drop_schema().await;
}
