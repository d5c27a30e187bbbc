//! The server end to end inside one process: real sockets on 127.0.0.1:0, HEP in,
//! websocket and HTTP out.

use bytes::Bytes;
use fiche_pbx::hep::{self, HepPacket};
use fiche_server::config::Config;
use fiche_server::serve::{self, Listeners};
use futures_util::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

mod auth;
mod hub_socket;
mod tickets;

const WAIT: Duration = Duration::from_secs(5);
/// Password of the `admin` user every test server starts with.
const ADMIN_PASSWORD: &str = "admin-secret-1";

struct Running {
    http: SocketAddr,
    hep: SocketAddr,
    /// The admin's session token, sent as `Authorization: Bearer` by the helpers.
    token: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _db_dir: tempfile::TempDir,
}

impl Running {
    async fn start(extra: &str) -> Running {
        let toml = format!(
            "http_addr = \"127.0.0.1:0\"\nweb_root = \"{}\"\n[hep]\naddr = \"127.0.0.1:0\"\n{extra}\n[calls]\nagent_extensions = ['2\\d\\d']\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../web-popup")
        );
        let config = Config::parse(&toml).unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        let http = listeners.http_addr().unwrap();
        let hep = listeners.hep_addr().unwrap();
        let db_dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db_dir.path().join("fiche.db").display());
        let store = fiche_store::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        fiche_server::auth::ensure_first_admin(&store, Some(ADMIN_PASSWORD.to_owned()))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve::run(config, listeners, store, shutdown.clone()));
        let mut running = Running {
            http,
            hep,
            token: String::new(),
            shutdown,
            task,
            _db_dir: db_dir,
        };
        running.token = running.login("admin", ADMIN_PASSWORD).await;
        running
    }

    /// Logs in; the session token.
    async fn login(&self, login: &str, password: &str) -> String {
        let credentials = serde_json::json!({"login": login, "password": password});
        let response = self
            .send("POST", "/api/login", None, Some(&credentials))
            .await;
        assert_eq!(response.status, 200, "login {login}: {}", response.body);
        json(&response.body)["token"].as_str().unwrap().to_owned()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(WAIT, self.task).await;
        assert!(
            matches!(result, Ok(Ok(Ok(())))),
            "server stops cleanly: {result:?}"
        );
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, None).await
    }

    async fn request(&self, method: &str, path: &str, json: Option<&Value>) -> (u16, String) {
        let response = self.send(method, path, Some(&self.token), json).await;
        (response.status, response.body)
    }

    /// One request with `token` (or none) as `Authorization: Bearer`.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        json: Option<&Value>,
    ) -> Response {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        self.send_with(method, path, &headers, json).await
    }

    /// One request with these extra headers.
    async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        json: Option<&Value>,
    ) -> Response {
        send_to(self.http, method, path, headers, json, WAIT).await
    }

    async fn live_calls(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/calls/live").await;
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }
}

/// One request to the server at `http` through the suites' HTTP client,
/// answered within `limit`.
async fn send_to(
    http: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: Option<&Value>,
    limit: Duration,
) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = fiche_e2e::http::client()
        .unwrap()
        .request(method, format!("http://{http}{path}"))
        .timeout(limit);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(json) = json {
        request = request.json(json);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    Response {
        status,
        headers,
        body,
    }
}

/// An HTTP answer: status, headers, body.
struct Response {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The raw call-event stream, as the admin.
async fn websocket(fiche: &Running) -> Ws {
    connect_ws(fiche.http, "/ws/events", Some(&fiche.token))
        .await
        .unwrap()
}

/// Opens `path` with `token` as `Authorization: Bearer`; the HTTP status on refusal.
async fn connect_ws(http: SocketAddr, path: &str, token: Option<&str>) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{http}{path}").into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("websocket {path}: {other}"),
    }
}

async fn next_event(ws: &mut Ws) -> Value {
    next_event_within(ws, WAIT).await
}

/// The next text message, parsed, waiting at most `limit`.
async fn next_event_within(ws: &mut Ws, limit: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(limit, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

const CALLER: &str = "127.0.0.1:5070";
const PHONE: &str = "127.0.0.1:5071";

/// A direct call from a customer's phone to extension 201, as captured.
fn call_flow(call_id: &str) -> Vec<(&'static str, &'static str, String)> {
    let invite = format!(
        "INVITE sip:201@{PHONE} SIP/2.0\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-1\r\n\
Max-Forwards: 70\r\n\
From: \"<script>alert(1)</script> Élodie\" <sip:0612345678@{CALLER}>;tag=caller-tag\r\n\
To: <sip:201@{PHONE}>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:0612345678@{CALLER}>\r\n\
Content-Length: 0\r\n\r\n"
    );
    let response = |status: &str, cseq: &str| {
        format!(
            "SIP/2.0 {status}\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{}\r\n\
From: \"<script>alert(1)</script> Élodie\" <sip:0612345678@{CALLER}>;tag=caller-tag\r\n\
To: <sip:201@{PHONE}>;tag=phone-tag\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq}\r\n\
Contact: <sip:201@{PHONE}>\r\n\
Content-Length: 0\r\n\r\n",
            if cseq.contains("BYE") { "3" } else { "1" }
        )
    };
    let ack = format!(
        "ACK sip:201@{PHONE} SIP/2.0\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-2\r\n\
From: \"<script>alert(1)</script> Élodie\" <sip:0612345678@{CALLER}>;tag=caller-tag\r\n\
To: <sip:201@{PHONE}>;tag=phone-tag\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
    );
    let bye = format!(
        "BYE sip:201@{PHONE} SIP/2.0\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-3\r\n\
From: \"<script>alert(1)</script> Élodie\" <sip:0612345678@{CALLER}>;tag=caller-tag\r\n\
To: <sip:201@{PHONE}>;tag=phone-tag\r\n\
Call-ID: {call_id}\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    vec![
        (CALLER, PHONE, invite),
        (PHONE, CALLER, response("180 Ringing", "1 INVITE")),
        (PHONE, CALLER, response("200 OK", "1 INVITE")),
        (CALLER, PHONE, ack),
        (CALLER, PHONE, bye),
        (PHONE, CALLER, response("200 OK", "2 BYE")),
    ]
}

fn hep_packet(src: &str, dst: &str, sip: &str, auth_key: Option<&str>) -> Vec<u8> {
    hep::encode(&HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: src.parse().ok(),
        dst: dst.parse().ok(),
        proto_type: Some(1),
        capture_id: Some(101),
        auth_key: auth_key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        payload: Bytes::copy_from_slice(sip.as_bytes()),
        ..HepPacket::default()
    })
}

async fn send_udp(to: SocketAddr, packets: &[Vec<u8>]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for packet in packets {
        socket.send_to(packet, to).await.unwrap();
        // Keep arrival order as on a real wire; the tracker sees each in turn.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_call_over_hep_udp_reaches_the_websocket_and_the_live_table() {
    let fiche = Running::start("").await;
    let (status, body) = fiche.get("/healthz").await;
    assert_eq!((status, body.contains("ok")), (200, true));
    let mut ws = websocket(&fiche).await;

    let packets: Vec<Vec<u8>> = call_flow("udp-call-1")
        .iter()
        .map(|(src, dst, sip)| hep_packet(src, dst, sip, None))
        .collect();
    send_udp(fiche.hep, &packets).await;

    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next_event(&mut ws).await);
    }
    assert_eq!(
        fiche_e2e::events::lines(&events),
        [
            "#1 call_started inbound caller=0612345678 (<script>alert(1)</script> Élodie) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: caller hung up",
        ]
    );
    assert_eq!(events[0]["source"], "hep");
    assert_eq!(events[0]["direction"], "inbound");
    assert_eq!(
        events[0]["caller"]["name"],
        "<script>alert(1)</script> Élodie"
    );
    assert_eq!(events[1]["extension"], "201");
    assert_eq!(events[2]["extension"], "201");
    assert_eq!(events[3]["outcome"], "answered");

    let calls = fiche.live_calls().await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call["source_key"], "udp-call-1");
    assert_eq!(call["state"], "ended");
    assert_eq!(call["outcome"], "answered");
    assert_eq!(call["agent_extension"], "201");
    assert_eq!(call["caller"]["number"], "0612345678");
    assert_eq!(call["caller"]["withheld"], false);
    assert_eq!(call["callee"]["number"], "201");
    assert!(call["answered_at"].is_string() && call["ended_at"].is_string());

    // The table comes in pages: the size in X-Total-Count, a bounded limit.
    let token = Some(fiche.token.as_str());
    let past = fiche
        .send("GET", "/api/calls/live?limit=1&offset=1", token, None)
        .await;
    assert_eq!((past.status, past.body.as_str()), (200, "[]"));
    assert_eq!(past.header("x-total-count"), Some("1"));
    for query in ["limit=0", "limit=10001", "limit=x", "page=2"] {
        let refused = fiche
            .send("GET", &format!("/api/calls/live?{query}"), token, None)
            .await;
        assert!(
            (400..500).contains(&refused.status),
            "{query}: {}",
            refused.status
        );
    }
    fiche.stop().await;
}

#[tokio::test]
async fn hep_over_tcp_survives_packets_split_across_writes() {
    let fiche = Running::start("").await;
    let mut ws = websocket(&fiche).await;
    let stream: Vec<u8> = call_flow("tcp-call-1")
        .iter()
        .take(2)
        .flat_map(|(src, dst, sip)| hep_packet(src, dst, sip, None))
        .collect();
    let mut tcp = TcpStream::connect(fiche.hep).await.unwrap();
    // Three uneven writes: the first packet is cut in the middle of a chunk.
    for part in [
        &stream[..17],
        &stream[17..stream.len() - 9],
        &stream[stream.len() - 9..],
    ] {
        tcp.write_all(part).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = next_event(&mut ws).await;
    let ringing = next_event(&mut ws).await;
    assert_eq!(started["type"], "call_started");
    assert_eq!(started["source_key"], "tcp-call-1");
    assert_eq!(ringing["type"], "ringing");
    assert_eq!(fiche.live_calls().await[0]["state"], "ringing");
    fiche.stop().await;
}

#[tokio::test]
async fn packets_without_the_auth_key_are_dropped() {
    let fiche = Running::start("auth_key = \"k3y\"").await;
    let mut ws = websocket(&fiche).await;
    let flow = call_flow("auth-call");
    let (src, dst, invite) = &flow[0];
    let wrong = hep_packet(src, dst, &invite.replace("auth-call", "no-key"), None);
    let bad = hep_packet(
        src,
        dst,
        &invite.replace("auth-call", "bad-key"),
        Some("nope"),
    );
    let good = hep_packet(src, dst, invite, Some("k3y"));
    send_udp(fiche.hep, &[wrong, bad, good]).await;
    let event = next_event(&mut ws).await;
    assert_eq!(
        event["source_key"], "auth-call",
        "only the keyed packet counts"
    );
    let calls = fiche.live_calls().await;
    assert_eq!(calls.len(), 1);
    fiche.stop().await;
}

#[tokio::test]
async fn packets_from_networks_not_allowed_are_dropped() {
    let fiche = Running::start("allow = [\"192.0.2.0/24\"]").await;
    let flow = call_flow("denied-call");
    let (src, dst, invite) = &flow[0];
    send_udp(fiche.hep, &[hep_packet(src, dst, invite, None)]).await;
    // The HEP v1 packet and garbage must not disturb anything either.
    send_udp(
        fiche.hep,
        &[vec![0x01, 0x10, 0x02, 0x11], b"HEP3\x00\x07x".to_vec()],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fiche.live_calls().await.is_empty());
    fiche.stop().await;
}

#[tokio::test]
async fn malformed_packets_do_not_stop_the_listener() {
    let fiche = Running::start("").await;
    let mut ws = websocket(&fiche).await;
    let flow = call_flow("after-garbage");
    let (src, dst, invite) = &flow[0];
    let mut garbage = hep_packet(src, dst, invite, None);
    garbage.truncate(40);
    send_udp(
        fiche.hep,
        &[
            vec![0x02; 30],
            garbage,
            b"HEP3\xff\xff".to_vec(),
            hep_packet(src, dst, "NOT SIP AT ALL\r\n\r\n", None),
            hep_packet(src, dst, invite, None),
        ],
    )
    .await;
    let event = next_event(&mut ws).await;
    assert_eq!(event["source_key"], "after-garbage");
    fiche.stop().await;
}

#[tokio::test]
async fn the_agent_page_is_served() {
    let fiche = Running::start("").await;
    let (status, body) = fiche.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>Fiche</title>"));
    let (status, _) = fiche.get("/agent.js").await;
    assert_eq!(status, 200);
    fiche.stop().await;
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn customers_are_found_by_any_number_format_and_kept_in_the_index() {
    let fiche = Running::start("").await;
    let (status, body) = fiche
        .request(
            "POST",
            "/api/customers",
            Some(&serde_json::json!({
                "name": "Hélène Dupont",
                "company": "Boulangerie du Port",
                "email": "helene@example.fr",
                "tags": ["VIP"],
                "phones": [
                    {"number": "06 12 34 56 78", "label": "portable"},
                    {"number": "+33 (0)1 23 45 67 89", "label": "bureau"}
                ]
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let created = json(&body);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["phones"][0]["e164"], "+33612345678");
    assert_eq!(created["phones"][1]["e164"], "+33123456789");

    // The caller's number as a PBX sends it finds her at once.
    let (status, body) = fiche
        .get("/api/customers/lookup?number=0033612345678")
        .await;
    assert_eq!(status, 200);
    let found = json(&body);
    assert_eq!(found["display"], "06 12 34 56 78");
    assert_eq!(found["matches"][0]["confidence"], "exact");
    assert_eq!(found["matches"][0]["customer"]["name"], "Hélène Dupont");

    // Search by name, by company, by a number as an agent types it.
    for q in [
        "h%C3%A9l%C3%A8ne",
        "boulangerie",
        "06%2012%2034%2056%2078",
        "%2B33123456789",
    ] {
        let (status, body) = fiche.get(&format!("/api/customers?q={q}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["total"], 1, "search {q}: {body}");
    }

    // Update: the mobile number goes away; the index follows without a restart.
    let (status, body) = fiche
        .request(
            "PUT",
            &format!("/api/customers/{id}"),
            Some(&serde_json::json!({
                "name": "Hélène Dupont",
                "phones": [{"number": "01 23 45 67 89", "label": "bureau"}]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = fiche.get("/api/customers/lookup?number=0612345678").await;
    assert_eq!(json(&body)["matches"], serde_json::json!([]));
    let (_, body) = fiche.get("/api/customers/lookup?number=0123456789").await;
    assert_eq!(json(&body)["matches"][0]["customer"]["id"], id);

    // Delete: gone from the file and from the index.
    let (status, _) = fiche
        .request("DELETE", &format!("/api/customers/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = fiche.get(&format!("/api/customers/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "not_found");
    let (_, body) = fiche.get("/api/customers/lookup?number=0123456789").await;
    assert_eq!(json(&body)["matches"], serde_json::json!([]));
    fiche.stop().await;
}

#[tokio::test]
async fn customer_errors_name_the_field() {
    let fiche = Running::start("").await;
    let cases = [
        (
            serde_json::json!({"name": "A", "phones": [{"number": "12ab"}]}),
            422,
            Some("phones[0].number"),
        ),
        (
            serde_json::json!({"name": "A", "phones": [{"number": "201"}]}),
            422,
            Some("phones[0].number"),
        ),
        (
            serde_json::json!({"name": "A", "email": "not an email"}),
            422,
            Some("email"),
        ),
        (
            serde_json::json!({"name": "", "company": null}),
            422,
            Some("name"),
        ),
        (
            serde_json::json!({"name": "A", "colour": "blue"}),
            400,
            None,
        ),
    ];
    for (input, status, field) in cases {
        let (got, body) = fiche.request("POST", "/api/customers", Some(&input)).await;
        assert_eq!(got, status, "{input} → {body}");
        let error = &json(&body)["error"];
        match field {
            Some(field) => assert_eq!(error["field"], field, "{input} → {body}"),
            None => assert!(
                error["message"].as_str().unwrap().contains("colour"),
                "{body}"
            ),
        }
    }
    let first = serde_json::json!({"name": "A", "external_ref": "C-1"});
    assert_eq!(
        fiche
            .request("POST", "/api/customers", Some(&first))
            .await
            .0,
        201
    );
    let (status, body) = fiche.request("POST", "/api/customers", Some(&first)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["error"]["field"], "external_ref");
    fiche.stop().await;
}
