//! Logins through the `fiche` binary: the first start on an empty database prints
//! a one-time admin password (French, then English) and a restart does not; without
//! a session the API, the pages and both websockets are refused.
//!
//! Nothing installed.

use fiche_e2e::auth::login;
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_e2e::http;
use tokio_tungstenite::tungstenite;

/// The password of the first-run line: `… mot de passe : PASSWORD / First run: …`.
fn printed_password(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|line| line.contains("Premier démarrage : compte admin créé, mot de passe : "))?;
    let (_, rest) = line.split_once("mot de passe : ")?;
    let (password, _) = rest.split_once(" / First run")?;
    Some(password.to_owned())
}

async fn start(scratch: &Scratch, name: &str) -> FicheProcess {
    // Empty means unset: Fiche picks the admin password itself.
    let extra = [("FICHE_ADMIN_PASSWORD", String::new())];
    FicheProcess::start(scratch, name, &AmiSetup::Toml(String::new()), &extra)
        .await
        .expect("starting fiche")
}

/// The HTTP status a websocket upgrade of `path` without a session gets.
async fn refused_upgrade(port: u16, path: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}")).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{path}: {other}"),
    }
}

#[tokio::test]
async fn the_first_start_prints_a_one_time_admin_password_and_nothing_works_without_a_session() {
    let scratch = Scratch::create().expect("scratch folder");
    let fiche = start(&scratch, "fiche").await;
    let log = fiche.log_text();
    let password = printed_password(&log).unwrap_or_else(|| panic!("no password printed:\n{log}"));
    assert!(password.len() >= 16, "{password:?}");
    let port = fiche.http_port();

    for (method, path) in [
        ("GET", "/api/calls/live"),
        ("GET", "/api/customers"),
        ("GET", "/api/me"),
        ("GET", "/api/users"),
    ] {
        let (status, body) = http::request(port, method, path, None, None).await.unwrap();
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
    assert_eq!(http::get(port, "/").await.unwrap().0, 303);
    assert_eq!(http::get(port, "/healthz").await.unwrap().0, 200);
    assert_eq!(http::get(port, "/login.html").await.unwrap().0, 200);
    assert_eq!(refused_upgrade(port, "/ws").await, 401);
    assert_eq!(refused_upgrade(port, "/ws/events").await, 401);

    let token = login(port, "admin", &password)
        .await
        .expect("admin logs in");
    let (status, body) = http::get_as(port, "/api/me", &token).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"role\":\"admin\""), "{body}");
    assert!(login(port, "admin", "not-the-password").await.is_err());

    // A restart on the same database keeps the account and prints nothing.
    fiche.kill().await.expect("stopping fiche");
    let again = start(&scratch, "fiche-again").await;
    let log = again.log_text();
    assert!(!log.contains("Premier démarrage"), "{log}");
    let token = login(again.http_port(), "admin", &password)
        .await
        .expect("same password after a restart");
    assert_eq!(
        http::get_as(again.http_port(), "/api/me", &token)
            .await
            .unwrap()
            .0,
        200
    );
}

/// `POST /api/login` through a client at `forwarded_for` (as a proxy would say
/// it in `X-Forwarded-For`; `None`: no header): the status.
async fn login_from(port: u16, forwarded_for: Option<&str>, login: &str, password: &str) -> u16 {
    let body = serde_json::json!({ "login": login, "password": password }).to_string();
    let headers: Vec<(&str, &str)> = forwarded_for
        .map(|ip| vec![("X-Forwarded-For", ip)])
        .unwrap_or_default();
    http::request_with(port, "POST", "/api/login", &headers, None, Some(&body))
        .await
        .expect("POST /api/login")
        .0
}

/// Starts Fiche with `toml`, adds agent `claire`; the process and the admin's token.
async fn start_with_claire(scratch: &Scratch, toml: &str) -> (FicheProcess, String) {
    let fiche = FicheProcess::start(scratch, "fiche", &AmiSetup::Toml(toml.into()), &[])
        .await
        .expect("starting fiche");
    let admin = fiche_e2e::auth::admin_token(fiche.http_port())
        .await
        .expect("admin logs in");
    let body = serde_json::json!({"login": "claire", "display_name": "Claire", "role": "agent",
                                  "extensions": ["201"], "password": "claire-password"})
    .to_string();
    let (status, answer) = http::request(
        fiche.http_port(),
        "POST",
        "/api/users",
        Some(&admin),
        Some(&body),
    )
    .await
    .expect("POST /api/users");
    assert_eq!(status, 201, "{answer}");
    (fiche, admin)
}

#[tokio::test]
async fn twenty_failed_logins_from_one_client_behind_the_proxy_do_not_stop_another_client() {
    let scratch = Scratch::create().expect("scratch folder");
    let toml = "[auth]\ntrusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n";
    let (fiche, _) = start_with_claire(&scratch, toml).await;
    let port = fiche.http_port();
    // Someone at 203.0.113.7 tries 20 logins, one guess each.
    for i in 0..20 {
        let status = login_from(port, Some("203.0.113.7"), &format!("intrus{i}"), "guess").await;
        assert_eq!(status, 401, "attempt {i}");
    }
    assert_eq!(
        login_from(port, Some("203.0.113.7"), "claire", "claire-password").await,
        429,
        "that client is paused, even with a right password it never used"
    );
    // Claire, at another desk behind the same proxy, logs in.
    assert_eq!(
        login_from(port, Some("203.0.113.8"), "claire", "claire-password").await,
        200
    );
    // Hops are read from the right: the client cannot hide behind an address
    // it writes itself in front of the proxy's.
    assert_eq!(
        login_from(port, Some("198.51.100.1, 203.0.113.7"), "intrus99", "guess").await,
        429
    );
}

#[tokio::test]
async fn one_address_never_locks_out_the_accounts_that_logged_in_from_it() {
    let scratch = Scratch::create().expect("scratch folder");
    // No trusted proxy: every request is from 127.0.0.1, like an office behind one NAT.
    let (fiche, _) = start_with_claire(&scratch, "").await;
    let port = fiche.http_port();
    assert_eq!(
        login_from(port, None, "claire", "claire-password").await,
        200
    );
    for i in 0..20 {
        assert_eq!(
            login_from(port, None, &format!("intrus{i}"), "guess").await,
            401
        );
    }
    // New logins from that address wait; X-Forwarded-For from a client that is
    // not a trusted proxy changes nothing.
    assert_eq!(login_from(port, None, "intrus20", "guess").await, 429);
    assert_eq!(
        login_from(port, Some("198.51.100.9"), "intrus21", "guess").await,
        429
    );
    // Claire and the admin, who logged in from it before, still do.
    assert_eq!(
        login_from(port, None, "claire", "claire-password").await,
        200
    );
    assert_eq!(
        login_from(port, None, "admin", fiche_e2e::auth::ADMIN_PASSWORD).await,
        200
    );
    // Claire's own limit still holds: five wrong passwords pause her login.
    for _ in 0..5 {
        assert_eq!(login_from(port, None, "claire", "wrong").await, 401);
    }
    assert_eq!(
        login_from(port, None, "claire", "claire-password").await,
        429
    );
}

/// The status of a websocket upgrade of `path` as `token`, sent with `origin`.
async fn upgrade_from(port: u16, path: &str, token: &str, origin: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("a websocket request");
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers.insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{path}: {other}"),
    }
}

#[tokio::test]
async fn a_cross_origin_websocket_is_refused() {
    let scratch = Scratch::create().expect("scratch folder");
    let toml = "[websocket]\nallowed_origins = [\"https://crm.example.com\"]\n";
    let (fiche, admin) = start_with_claire(&scratch, toml).await;
    let port = fiche.http_port();
    let own = format!("http://127.0.0.1:{port}");
    for path in ["/ws", "/ws/events"] {
        assert_eq!(
            upgrade_from(port, path, &admin, "https://evil.example").await,
            403,
            "{path}"
        );
        assert_eq!(
            upgrade_from(port, path, &admin, "http://127.0.0.1:1").await,
            403,
            "{path}: another port is another origin"
        );
        assert_eq!(upgrade_from(port, path, &admin, &own).await, 101, "{path}");
        assert_eq!(
            upgrade_from(port, path, &admin, "https://crm.example.com").await,
            101,
            "{path}"
        );
    }
}

/// A server that stops tells every open page "going away" (1001), so the
/// page reconnects at once instead of waiting for a dead socket to time out.
#[tokio::test]
async fn a_stopping_server_tells_open_pages_it_is_going_away() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let scratch = Scratch::create().expect("scratch folder");
    let (fiche, admin) = start_with_claire(&scratch, "").await;
    let port = fiche.http_port();
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .expect("a websocket request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {admin}").parse().expect("a header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the board's websocket opens");
    // The snapshot first: the socket is registered with the hub.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("a snapshot within 10 s");
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
    fiche.terminate().expect("SIGTERM");
    let close = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("a close frame within 10 s");
    let frame = close.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
}

/// The pages are inside the binary: a `fiche` copied alone into an empty
/// folder, started there with no `FICHE_WEB_ROOT`, serves the login page and
/// the agent page with their content types.
#[tokio::test]
async fn a_binary_copied_alone_serves_its_pages() {
    let scratch = Scratch::create().expect("scratch folder");
    let copy = scratch.path().join("fiche");
    std::fs::copy(
        fiche_e2e::testbed::fiche_binary().expect("the fiche binary"),
        &copy,
    )
    .expect("copying the binary");
    let fiche = FicheProcess::start_binary(
        &copy,
        &scratch,
        "alone",
        &AmiSetup::Toml(String::new()),
        &[("FICHE_WEB_ROOT", String::new())],
    )
    .await
    .expect("fiche starts from an empty folder");
    let port = fiche.http_port();
    let (status, body) = fiche_e2e::http::get(port, "/login.html")
        .await
        .expect("GET /login.html");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<html"), "{body}");
    let (status, body) = fiche_e2e::http::get(port, "/i18n.js")
        .await
        .expect("GET /i18n.js");
    assert_eq!(status, 200);
    assert!(
        body.contains("Taux de réponse"),
        "the French text is built in"
    );
    // The pages say what they may load, and that nobody may frame them.
    let (status, headers) = fiche_e2e::http::get_headers(port, "/login.html")
        .await
        .expect("GET /login.html");
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let csp = header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(header("x-content-type-options"), Some("nosniff"));
    assert_eq!(header("x-frame-options"), Some("DENY"));
    assert_eq!(header("referrer-policy"), Some("no-referrer"));
    assert!(header("content-type").is_some_and(|t| t.starts_with("text/html")));
}
