//! Logins through the `fiche` binary: the first start on an empty database prints
//! a one-time admin password (French, then English) and a restart does not; without
//! a session the API, the pages and both websockets are refused.
//!
//! Needs `cargo build -p fiche-server` first (`FICHE_BIN` picks another binary).

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
