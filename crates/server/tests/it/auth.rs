//! Login, sessions, roles, and who sees what on the websockets.

use super::{call_flow, connect_ws, hep_packet, json, send_udp, Running, Ws, ADMIN_PASSWORD, WAIT};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Creates a user through the admin API; returns its id.
async fn add_user(fiche: &Running, login: &str, role: &str, extensions: &[&str]) -> i64 {
    let body = json!({
        "login": login,
        "display_name": login,
        "role": role,
        "extensions": extensions,
        "password": format!("{login}-password"),
    });
    let (status, answer) = fiche.request("POST", "/api/users", Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    json(&answer)["id"].as_i64().unwrap()
}

fn credentials(login: &str, password: &str) -> Value {
    json!({"login": login, "password": password})
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_me_names_the_user() {
    let fiche = Running::start("").await;
    let response = fiche
        .send(
            "POST",
            "/api/login",
            None,
            Some(&credentials("ADMIN", ADMIN_PASSWORD)),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let answer = json(&response.body);
    assert_eq!(answer["user"]["login"], "admin");
    assert_eq!(answer["user"]["role"], "admin");
    let token = answer["token"].as_str().unwrap();
    let cookie = response.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("fiche_session={token};")),
        "{cookie}"
    );
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    // The cookie alone is a session, as a browser sends it.
    let me = fiche
        .send_with(
            "GET",
            "/api/me",
            &[("cookie", &format!("fiche_session={token}"))],
            None,
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = json(&me.body);
    assert_eq!(
        (me["login"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"))
    );

    // Behind a TLS proxy the cookie is Secure.
    let behind_tls = fiche
        .send_with(
            "POST",
            "/api/login",
            &[("x-forwarded-proto", "https")],
            Some(&credentials("admin", ADMIN_PASSWORD)),
        )
        .await;
    assert!(behind_tls
        .header("set-cookie")
        .unwrap()
        .contains("; Secure"));
    fiche.stop().await;
}

#[tokio::test]
async fn bad_passwords_and_unknown_logins_are_refused_alike() {
    let fiche = Running::start("").await;
    for (login, password) in [
        ("admin", "wrong-password"),
        ("nobody", ADMIN_PASSWORD),
        ("", ""),
    ] {
        let response = fiche
            .send(
                "POST",
                "/api/login",
                None,
                Some(&credentials(login, password)),
            )
            .await;
        assert_eq!(response.status, 401, "{login}: {}", response.body);
        assert_eq!(json(&response.body)["error"]["code"], "unauthorized");
        assert!(response.header("set-cookie").is_none());
    }
    fiche.stop().await;
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_even_with_the_right_password_after() {
    let fiche = Running::start("").await;
    add_user(&fiche, "claire", "agent", &["201"]).await;
    for _ in 0..5 {
        let response = fiche
            .send(
                "POST",
                "/api/login",
                None,
                Some(&credentials("claire", "guess-guess")),
            )
            .await;
        assert_eq!(response.status, 401);
    }
    let response = fiche
        .send(
            "POST",
            "/api/login",
            None,
            Some(&credentials("Claire", "claire-password")),
        )
        .await;
    assert_eq!(response.status, 429, "{}", response.body);
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    // Another login from the same address is not blocked yet.
    fiche.login("admin", ADMIN_PASSWORD).await;
    fiche.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session() {
    let fiche = Running::start("").await;
    let token = fiche.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        fiche
            .send("GET", "/api/me", Some(&token), None)
            .await
            .status,
        200
    );
    let out = fiche.send("POST", "/api/logout", Some(&token), None).await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = fiche.send("GET", "/api/me", Some(&token), None).await;
    assert_eq!(after.status, 401);
    assert_eq!(json(&after.body)["error"]["code"], "unauthorized");
    // The other session (the helper's) lives on.
    assert_eq!(fiche.get("/api/me").await.0, 200);
    fiche.stop().await;
}

#[tokio::test]
async fn a_disabled_user_loses_their_session_and_cannot_log_in() {
    let fiche = Running::start("").await;
    let id = add_user(&fiche, "malik", "agent", &["202"]).await;
    let token = fiche.login("malik", "malik-password").await;
    assert_eq!(
        fiche
            .send("GET", "/api/me", Some(&token), None)
            .await
            .status,
        200
    );
    let mut socket = connect_ws(fiche.http, "/ws", Some(&token)).await.unwrap();
    assert_eq!(super::next_event(&mut socket).await["type"], "snapshot");

    let (status, body) = fiche
        .request(
            "PATCH",
            &format!("/api/users/{id}"),
            Some(&json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["disabled"], true);
    assert_eq!(
        fiche
            .send("GET", "/api/me", Some(&token), None)
            .await
            .status,
        401
    );
    let again = fiche
        .send(
            "POST",
            "/api/login",
            None,
            Some(&credentials("malik", "malik-password")),
        )
        .await;
    assert_eq!(again.status, 401);
    // Their open socket is closed by the server.
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(_)) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true));
    fiche.stop().await;
}

#[tokio::test]
async fn every_route_and_socket_needs_a_session() {
    let fiche = Running::start("").await;
    for (method, path) in [
        ("GET", "/api/calls/live"),
        ("GET", "/api/customers"),
        ("GET", "/api/customers/lookup?number=0612345678"),
        ("POST", "/api/customers"),
        ("GET", "/api/me"),
        ("GET", "/api/users"),
        ("POST", "/api/users"),
        ("PATCH", "/api/users/1"),
        ("POST", "/api/logout"),
        ("GET", "/app.js"),
        ("GET", "/ws"),
        ("GET", "/ws/events"),
    ] {
        let response = fiche.send(method, path, None, Some(&json!({}))).await;
        assert_eq!(response.status, 401, "{method} {path}: {}", response.body);
        let bogus = fiche
            .send(method, path, Some("not-a-token"), Some(&json!({})))
            .await;
        assert_eq!(bogus.status, 401, "{method} {path} with a bogus token");
    }
    for path in ["/", "/index.html", "/board.html"] {
        let response = fiche.send("GET", path, None, None).await;
        assert_eq!(response.status, 303, "{path}");
        assert_eq!(response.header("location"), Some("/login.html"));
    }
    for path in ["/healthz", "/login.html", "/login.js", "/style.css"] {
        assert_eq!(
            fiche.send("GET", path, None, None).await.status,
            200,
            "{path}"
        );
    }
    for path in ["/ws", "/ws/events"] {
        assert_eq!(
            connect_ws(fiche.http, path, None).await.err(),
            Some(401),
            "{path}"
        );
    }
    fiche.stop().await;
}

#[tokio::test]
async fn agents_cannot_use_admin_routes_or_the_raw_event_stream() {
    let fiche = Running::start("").await;
    add_user(&fiche, "claire", "agent", &["201"]).await;
    add_user(&fiche, "sophie", "supervisor", &[]).await;
    let agent = fiche.login("claire", "claire-password").await;
    let new_user = json!({"login": "x", "role": "admin", "password": "xxxxxxxxxx"});
    for (method, path, body) in [
        ("GET", "/api/users", None),
        ("POST", "/api/users", Some(&new_user)),
        ("PATCH", "/api/users/1", Some(&json!({"role": "agent"}))),
    ] {
        let response = fiche.send(method, path, Some(&agent), body).await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        assert_eq!(json(&response.body)["error"]["code"], "forbidden");
    }
    assert_eq!(
        connect_ws(fiche.http, "/ws/events", Some(&agent))
            .await
            .err(),
        Some(403)
    );
    // The agent's own routes work.
    assert_eq!(
        fiche
            .send("GET", "/api/calls/live", Some(&agent), None)
            .await
            .status,
        200
    );
    assert!(connect_ws(fiche.http, "/ws", Some(&agent)).await.is_ok());
    // A supervisor reads the raw stream but does not manage users.
    let supervisor = fiche.login("sophie", "sophie-password").await;
    assert!(connect_ws(fiche.http, "/ws/events", Some(&supervisor))
        .await
        .is_ok());
    // On /ws the supervisor gets the board, with the agents directory.
    let mut board = connect_ws(fiche.http, "/ws", Some(&supervisor))
        .await
        .unwrap();
    let snapshot = next_news(&mut board).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["role"], "supervisor");
    let agents = snapshot["agents"].as_array().unwrap();
    assert!(
        agents
            .iter()
            .any(|a| a["name"] == "claire" && a["extensions"] == json!(["201"])),
        "{snapshot}"
    );
    assert_eq!(
        fiche
            .send("GET", "/api/users", Some(&supervisor), None)
            .await
            .status,
        403
    );
    fiche.stop().await;
}

/// The next message that is not a heartbeat.
async fn next_news(ws: &mut Ws) -> Value {
    next_news_within(ws, WAIT).await
}

/// A call ringing at `extension` (INVITE and 180), sent as HEP.
async fn ring(fiche: &Running, call_id: &str, extension: &str) {
    let packets: Vec<Vec<u8>> = call_flow(call_id)
        .iter()
        .take(2)
        .map(|(src, dst, sip)| hep_packet(src, dst, &sip.replace("201", extension), None))
        .collect();
    send_udp(fiche.hep, &packets).await;
}

#[tokio::test]
async fn agent_b_never_receives_agent_a_pop() {
    let fiche = Running::start("").await;
    add_user(&fiche, "claire", "agent", &["201"]).await;
    add_user(&fiche, "malik", "agent", &["202"]).await;
    let claire = fiche.login("claire", "claire-password").await;
    let malik = fiche.login("malik", "malik-password").await;
    // Browsers open the socket with the cookie only.
    let cookie_socket = |token: String| {
        let http = fiche.http;
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("ws://{http}/ws").into_client_request().unwrap();
            request
                .headers_mut()
                .insert("cookie", format!("fiche_session={token}").parse().unwrap());
            tokio_tungstenite::connect_async(request).await.unwrap().0
        }
    };
    let mut a = cookie_socket(claire).await;
    let mut b = cookie_socket(malik).await;
    let snapshot_a = next_news(&mut a).await;
    let snapshot_b = next_news(&mut b).await;
    assert_eq!(snapshot_a["type"], "snapshot");
    assert_eq!(snapshot_a["extensions"], json!(["201"]));
    assert_eq!(snapshot_b["type"], "snapshot");
    assert_eq!(snapshot_b["extensions"], json!(["202"]));

    ring(&fiche, "for-claire", "201").await;
    let pop = next_news(&mut a).await;
    assert_eq!(pop["type"], "pop", "{pop}");
    assert_eq!(pop["extension"], "201");
    assert_eq!(pop["call"]["source_key"], "for-claire", "{pop}");

    // Then a call for Malik: the first thing his socket hears about is his own
    // call, so Claire's never reached it.
    ring(&fiche, "for-malik", "202").await;
    let first = next_news(&mut b).await;
    assert_eq!(first["type"], "pop", "{first}");
    assert_eq!(first["extension"], "202");
    assert_eq!(first["call"]["source_key"], "for-malik", "{first}");
    assert!(!first.to_string().contains("for-claire"));
    fiche.stop().await;
}

#[tokio::test]
async fn the_first_run_creates_one_admin_with_a_printed_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("first.db").display());
    let store = fiche_store::Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let password = fiche_server::auth::ensure_first_admin(&store, None)
        .await
        .unwrap()
        .expect("a generated password");
    assert!(password.len() >= 16);
    let (admin, hash) = store.user_password("admin").await.unwrap().unwrap();
    assert_eq!(admin.role, fiche_store::Role::Admin);
    assert!(hash.verify(&password));
    // Only once: a second start leaves the accounts alone.
    assert_eq!(
        fiche_server::auth::ensure_first_admin(&store, Some("other-password".into()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn an_agent_added_from_the_command_line_joins_the_board_at_login() {
    let fiche = Running::start("").await;
    // `fiche user add` writes straight into the database of the running server.
    let url = format!(
        "sqlite://{}",
        fiche._db_dir.path().join("fiche.db").display()
    );
    let cli = fiche_store::Store::connect(&url).await.unwrap();
    let user = cli
        .add_user(&fiche_store::NewUser {
            login: "nadia".into(),
            display_name: "Nadia".into(),
            role: fiche_store::Role::Agent,
            password: Some(fiche_store::PasswordHash::hash("nadia-password").unwrap()),
        })
        .await
        .unwrap();
    cli.set_extensions(user.id, &["204".to_owned()])
        .await
        .unwrap();
    cli.close().await;

    let nadia = fiche.login("nadia", "nadia-password").await;
    assert!(!nadia.is_empty());
    let mut board = connect_ws(fiche.http, "/ws", Some(&fiche.token))
        .await
        .unwrap();
    let snapshot = next_news(&mut board).await;
    let agents = snapshot["agents"].as_array().unwrap();
    assert!(
        agents
            .iter()
            .any(|a| a["name"] == "Nadia" && a["extensions"] == json!(["204"])),
        "{snapshot}"
    );

    // Extension 204 moves from Nadia to Yann, again from the command line: at
    // Yann's login the board (already open) shows the move on both agents.
    let cli = fiche_store::Store::connect(&url).await.unwrap();
    let yann = cli
        .add_user(&fiche_store::NewUser {
            login: "yann".into(),
            display_name: "Yann".into(),
            role: fiche_store::Role::Agent,
            password: Some(fiche_store::PasswordHash::hash("yann-password").unwrap()),
        })
        .await
        .unwrap();
    cli.set_extensions(user.id, &[]).await.unwrap();
    cli.set_extensions(yann.id, &["204".to_owned()])
        .await
        .unwrap();
    cli.close().await;
    assert!(!fiche.login("yann", "yann-password").await.is_empty());
    let directory = loop {
        let news = next_news(&mut board).await;
        if news["type"] == "agents" {
            break news;
        }
    };
    let agents = directory["agents"].as_array().unwrap();
    let extensions_of = |name: &str| {
        agents
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["extensions"].clone())
    };
    assert_eq!(extensions_of("Yann"), Some(json!(["204"])), "{directory}");
    assert_eq!(extensions_of("Nadia"), Some(json!([])), "{directory}");

    // Nadia is disabled from the command line and nobody logs in: the board
    // drops her within a check of the users (5 s).
    let cli = fiche_store::Store::connect(&url).await.unwrap();
    cli.set_disabled(user.id, true).await.unwrap();
    cli.close().await;
    let without_nadia = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let news = next_news_within(&mut board, Duration::from_secs(15)).await;
            let gone = news["type"] == "agents"
                && news["agents"]
                    .as_array()
                    .is_some_and(|agents| agents.iter().all(|a| a["name"] != "Nadia"));
            if gone {
                break news;
            }
        }
    })
    .await
    .expect("the board drops a user disabled from the command line");
    assert!(
        without_nadia["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "Yann"),
        "{without_nadia}"
    );
    fiche.stop().await;
}

/// The next message that is not a ping, waiting at most `limit` for each.
async fn next_news_within(ws: &mut Ws, limit: Duration) -> Value {
    loop {
        let message = super::next_event_within(ws, limit).await;
        if message["type"] != "ping" {
            return message;
        }
    }
}

/// One login over its own connection, with a wait long enough for a queue of
/// argon2 checks in an unoptimised test build (about a second each).
async fn slow_login(http: std::net::SocketAddr, login: &str, password: &str) -> (u16, String) {
    let body = credentials(login, password);
    let response = super::send_to(
        http,
        "POST",
        "/api/login",
        &[],
        Some(&body),
        Duration::from_secs(120),
    )
    .await;
    (response.status, response.body)
}

#[tokio::test]
async fn concurrent_logins_each_get_their_own_answer() {
    let fiche = Running::start("").await;
    for login in ["claire", "malik", "nadia"] {
        add_user(&fiche, login, "agent", &[]).await;
    }
    // All at once: more than the password workers, so most wait in the queue.
    // Wrong passwords stay under the per-login (5) and per-address (20) limits.
    let attempts: Vec<(&str, String, u16)> = ["claire", "malik", "nadia"]
        .iter()
        .flat_map(|login| {
            [
                (*login, format!("{login}-password"), 200),
                (*login, format!("{login}-password"), 200),
                (*login, format!("{login}-passwort"), 401),
                (*login, "admin-secret-1".to_owned(), 401),
            ]
        })
        .collect();
    let answers = futures_util::future::join_all(
        attempts
            .iter()
            .map(|(login, password, _)| slow_login(fiche.http, login, password)),
    )
    .await;
    for ((login, password, expected), (status, body)) in attempts.iter().zip(&answers) {
        assert_eq!(status, expected, "{login} / {password}: {body}");
        if *status == 200 {
            assert_eq!(json(body)["user"]["login"], *login, "{body}");
        }
    }
    fiche.stop().await;
}

#[tokio::test]
async fn a_password_hash_stored_by_an_earlier_version_still_logs_in() {
    let fiche = Running::start("").await;
    let id = add_user(&fiche, "claire", "agent", &["201"]).await;
    // argon2id as written before the password workers (argon2's `hash_password`),
    // password "rappel-du-matin".
    let stored = "$argon2id$v=19$m=19456,t=2,p=1$rZjYPJpBpNh06yET30BFGw$\
                  MpV/SYpnT9VCE6lBGX1Pu42oXdaAks5pgtGTRzMd+/A";
    let url = format!(
        "sqlite://{}",
        fiche._db_dir.path().join("fiche.db").display()
    );
    let store = fiche_store::Store::connect(&url).await.unwrap();
    store
        .set_password(
            fiche_store::UserId(id),
            &fiche_store::PasswordHash::from_phc(stored).unwrap(),
        )
        .await
        .unwrap();
    store.close().await;
    let (status, body) = slow_login(fiche.http, "claire", "rappel-du-matin").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = slow_login(fiche.http, "claire", "claire-password").await;
    assert_eq!(status, 401);
    fiche.stop().await;
}

/// The id of the `admin` account every test server starts with.
async fn admin_id(fiche: &Running) -> i64 {
    let (status, body) = fiche.get("/api/me").await;
    assert_eq!(status, 200, "{body}");
    json(&body)["id"].as_i64().unwrap()
}

fn assert_refused_on(status: u16, body: &str, field: &str) {
    assert_eq!(status, 422, "{body}");
    let error = &json(body)["error"];
    assert_eq!(error["code"], "invalid", "{body}");
    assert_eq!(error["field"], field, "{body}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("last enabled admin"),
        "{body}"
    );
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_disabled() {
    let fiche = Running::start("").await;
    let admin = admin_id(&fiche).await;
    let path = format!("/api/users/{admin}");
    let (status, body) = fiche
        .request(
            "PATCH",
            &path,
            Some(&json!({"role": "supervisor", "display_name": "Chef"})),
        )
        .await;
    assert_refused_on(status, &body, "role");
    let (status, body) = fiche
        .request("PATCH", &path, Some(&json!({"disabled": true})))
        .await;
    assert_refused_on(status, &body, "disabled");
    // Nothing changed: still an enabled admin with the same name, still logged in.
    let (status, body) = fiche.get("/api/me").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["role"], "admin");
    assert_eq!(json(&body)["display_name"], "Administrateur");
    fiche.login("admin", ADMIN_PASSWORD).await;

    // With a second admin, the first may step down.
    let sophie = add_user(&fiche, "sophie", "admin", &[]).await;
    let (status, body) = fiche
        .request("PATCH", &path, Some(&json!({"role": "supervisor"})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["role"], "supervisor");
    // Sophie is now the last one.
    let sophie_token = fiche.login("sophie", "sophie-password").await;
    let response = fiche
        .send(
            "PATCH",
            &format!("/api/users/{sophie}"),
            Some(&sophie_token),
            Some(&json!({"disabled": true})),
        )
        .await;
    assert_refused_on(response.status, &response.body, "disabled");
    fiche.stop().await;
}

#[tokio::test]
async fn the_command_line_refuses_to_remove_the_last_admin_too() {
    use fiche_server::cli::user::{run, UserCommand};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let store = fiche_store::Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    fiche_server::auth::ensure_first_admin(&store, Some(ADMIN_PASSWORD.into()))
        .await
        .unwrap();
    for command in [
        UserCommand::Role {
            login: "admin".into(),
            role: "agent".into(),
        },
        UserCommand::Disable {
            login: "admin".into(),
        },
    ] {
        let error = run(&store, command).await.unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("last enabled admin"), "{message}");
    }
    let admin = store.get_user_by_login("admin").await.unwrap().unwrap();
    assert_eq!(
        (admin.role, admin.disabled),
        (fiche_store::Role::Admin, false)
    );
    store.close().await;
}
