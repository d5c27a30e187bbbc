//! The hub websocket `/ws`: it lives no longer than the session that opened
//! it, and it bounds what a browser may send.

use super::{connect_ws, Running, Ws, ADMIN_PASSWORD, WAIT};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// Opens `/ws` with `token` and reads its snapshot.
async fn open(fiche: &Running, token: &str) -> Ws {
    let mut ws = connect_ws(fiche.http, "/ws", Some(token)).await.unwrap();
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a snapshot within 5 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = message {
            assert!(text.contains(r#""type":"snapshot""#), "{text}");
            return ws;
        }
    }
}

/// Reads until the server closes the socket; the close frame's code and reason.
async fn closed_within(ws: &mut Ws, wait: std::time::Duration) -> Option<(CloseCode, String)> {
    tokio::time::timeout(wait, async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (f.code, f.reason.to_string()));
                }
                Ok(_) => {}
                Err(error) => panic!("socket failed instead of closing: {error}"),
            }
        }
        None
    })
    .await
    .expect("the server closes the socket")
}

/// What the store keeps of a token: its hex SHA-256.
fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn logging_out_closes_the_sockets_of_that_session_only() {
    let fiche = Running::start("").await;
    let leaving = fiche.login("admin", ADMIN_PASSWORD).await;
    let mut gone = open(&fiche, &leaving).await;
    let mut staying = open(&fiche, &fiche.token).await;

    let out = fiche
        .send("POST", "/api/logout", Some(&leaving), None)
        .await;
    assert_eq!(out.status, 204);
    let (code, reason) = closed_within(&mut gone, WAIT).await.unwrap();
    assert_eq!(code, CloseCode::Policy);
    assert_eq!(reason, "session ended");

    // The other session's socket still works: it answers a ping.
    use futures_util::SinkExt;
    staying
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, staying.next()).await.unwrap();
    assert!(
        matches!(&pong, Some(Ok(Message::Text(t))) if t.contains(r#""type":"pong""#)),
        "{pong:?}"
    );
    fiche.stop().await;
}

/// Also: a session with a page open is kept alive, as if used.
#[tokio::test]
async fn an_expired_or_revoked_session_closes_its_socket() {
    let fiche = Running::start("").await;
    let expiring = fiche.login("admin", ADMIN_PASSWORD).await;
    let revoked = fiche.login("admin", ADMIN_PASSWORD).await;
    let mut expired_ws = open(&fiche, &expiring).await;
    let mut revoked_ws = open(&fiche, &revoked).await;
    let mut live_ws = open(&fiche, &fiche.token).await;

    // Another process on the same database (as `fiche user passwd` is): one
    // session's time runs out, another is deleted.
    let url = format!(
        "sqlite://{}",
        fiche._db_dir.path().join("fiche.db").display()
    );
    let store = fiche_store::Store::connect(&url).await.unwrap();
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    store.touch_session(&digest(&expiring), past).await.unwrap();
    store.delete_session(&digest(&revoked)).await.unwrap();
    // The live session would lapse in a minute; its open page keeps it.
    let soon = chrono::Utc::now() + chrono::Duration::minutes(1);
    store
        .touch_session(&digest(&fiche.token), soon)
        .await
        .unwrap();

    let wait = fiche_server::auth::SOCKET_SESSION_CHECK + WAIT;
    for ws in [&mut expired_ws, &mut revoked_ws] {
        let (code, reason) = closed_within(ws, wait).await.unwrap();
        assert_eq!(code, CloseCode::Policy);
        assert_eq!(reason, "session ended");
    }
    // The live session's socket stayed open through the check.
    use futures_util::SinkExt;
    live_ws
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, live_ws.next()).await.unwrap();
    assert!(
        matches!(&pong, Some(Ok(Message::Text(t))) if t.contains(r#""type":"pong""#)),
        "{pong:?}"
    );
    let kept = store
        .session(&digest(&fiche.token), soon + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(
        kept.is_some(),
        "the session behind an open page was extended by the same check"
    );
    store.close().await;
    fiche.stop().await;
}

#[tokio::test]
async fn a_page_that_stops_answering_pings_is_closed_and_one_that_answers_stays() {
    use futures_util::SinkExt;
    let fiche = Running::start("[websocket]\nping_secs = 1").await;
    let mut silent = open(&fiche, &fiche.token).await;
    let mut alive = open(&fiche, &fiche.token).await;
    let answering = tokio::spawn(async move {
        let mut pings = 0;
        while pings < 4 {
            match alive.next().await {
                Some(Ok(Message::Text(text))) if text.contains(r#""type":"ping""#) => {
                    pings += 1;
                    alive
                        .send(Message::Text(r#"{"type":"pong"}"#.into()))
                        .await
                        .unwrap();
                }
                Some(Ok(_)) => {}
                other => panic!("the answering page lost its socket: {other:?}"),
            }
        }
        alive
    });
    // The silent page reads its ping but never answers: closed at the next beat.
    let (code, reason) = closed_within(&mut silent, WAIT).await.unwrap();
    assert_eq!(code, CloseCode::Away);
    assert_eq!(reason, "timed out");
    let mut alive = tokio::time::timeout(3 * WAIT, answering)
        .await
        .expect("four pings within 15 s")
        .unwrap();
    // Still open after four heartbeats: it answers a ping of its own.
    alive
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout(WAIT, alive.next()).await.unwrap();
        match message {
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"pong""#) => break,
            Some(Ok(_)) => {}
            other => panic!("no pong: {other:?}"),
        }
    }
    fiche.stop().await;
}

#[tokio::test]
async fn a_browser_message_over_4_kib_is_refused_and_the_socket_goes_on() {
    use futures_util::SinkExt;
    let fiche = Running::start("").await;
    let mut ws = open(&fiche, &fiche.token).await;
    let padding = "x".repeat(5 * 1024);
    ws.send(Message::Text(
        format!(r#"{{"type":"ping","pad":"{padding}"}}"#).into(),
    ))
    .await
    .unwrap();
    let answer = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        matches!(&answer, Some(Ok(Message::Text(t))) if t.contains(r#""code":"bad_message""#)),
        "{answer:?}"
    );
    // Still open: a small message is answered.
    ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        matches!(&pong, Some(Ok(Message::Text(t))) if t.contains(r#""type":"pong""#)),
        "{pong:?}"
    );
    fiche.stop().await;
}
