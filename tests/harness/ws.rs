//! The `/ws/events` call-event stream (admin session), read in the background
//! from connection on.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Call events received on `ws://127.0.0.1:<port>/ws/events`.
#[derive(Debug)]
pub struct EventStream {
    received: mpsc::UnboundedReceiver<Value>,
    reader: JoinHandle<()>,
}

impl EventStream {
    /// Connects (bounded) with the session `token` and starts buffering every message.
    pub async fn connect(port: u16, token: &str) -> anyhow::Result<Self> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://127.0.0.1:{port}/ws/events");
        let mut request = url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (socket, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .with_context(|| format!("connecting {url} timed out"))?
        .with_context(|| format!("connecting {url}"))?;
        let (mut outgoing, mut incoming) = socket.split();
        // The server subscribes to the event fan-out only after the upgrade, in
        // its socket task; its answer to a ping proves that task runs, so no
        // event of the scenario about to start can be missed.
        outgoing
            .send(Message::Ping(b"ready".to_vec().into()))
            .await?;
        let mut early = Vec::new();
        let subscribed = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(message) = incoming.next().await {
                match message {
                    Ok(Message::Pong(_)) => return true,
                    Ok(other) => early.push(other),
                    Err(_) => return false,
                }
            }
            false
        })
        .await;
        if !matches!(subscribed, Ok(true)) {
            anyhow::bail!("{url}: no answer to a ping within 5 s");
        }
        let (sender, received) = mpsc::unbounded_channel();
        for message in early {
            if let Message::Text(text) = message {
                drop(sender.send(parse(text.as_str())));
            }
        }
        let reader = tokio::spawn(async move {
            let _keep_open = outgoing;
            while let Some(message) = incoming.next().await {
                let value = match message {
                    Ok(Message::Text(text)) => parse(text.as_str()),
                    Ok(Message::Binary(_)) => Value::String("unexpected binary message".into()),
                    Ok(Message::Close(frame)) => {
                        drop(sender.send(Value::String(format!("closed by server: {frame:?}"))));
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        drop(sender.send(Value::String(format!("websocket error: {e}"))));
                        return;
                    }
                };
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        Ok(Self { received, reader })
    }

    /// Everything received so far and until every started call has ended and
    /// `quiet` passed without a message — or `limit` passed.
    pub async fn collect(&mut self, limit: Duration, quiet: Duration) -> Vec<Value> {
        self.collect_calls(limit, quiet, 1).await
    }

    /// Like [`collect`](Self::collect), but the quiet period only starts once at
    /// least `calls` calls have started and all have ended: with several sources,
    /// one call may end before another source's call has even begun.
    pub async fn collect_calls(
        &mut self,
        limit: Duration,
        quiet: Duration,
        calls: usize,
    ) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        let mut started = BTreeSet::new();
        let mut ended = BTreeSet::new();
        loop {
            let all_ended = started.len() >= calls.max(1) && started.is_subset(&ended);
            let until = match all_ended {
                true => (Instant::now() + quiet).min(deadline),
                false => deadline,
            };
            match tokio::time::timeout_at(until, self.received.recv()).await {
                Ok(Some(event)) => {
                    let call = event["call_id"].as_str().unwrap_or_default().to_owned();
                    match event["type"].as_str() {
                        Some("call_started") => {
                            started.insert(call);
                        }
                        Some("ended") => {
                            ended.insert(call);
                        }
                        _ => {}
                    }
                    events.push(event);
                }
                Ok(None) | Err(_) => return events,
            }
        }
    }
}

impl EventStream {
    /// The next message received, waiting at most `limit`; `None` on timeout
    /// or once the stream is closed.
    pub async fn next(&mut self, limit: Duration) -> Option<Value> {
        tokio::time::timeout(limit, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(format!("not JSON: {text}")))
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
