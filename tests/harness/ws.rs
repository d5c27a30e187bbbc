//! The `/ws` event stream, read in the background from connection on.

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Call events received on `ws://127.0.0.1:<port>/ws`.
#[derive(Debug)]
pub struct EventStream {
    received: mpsc::UnboundedReceiver<Value>,
    reader: JoinHandle<()>,
}

impl EventStream {
    /// Connects (bounded) and starts buffering every message.
    pub async fn connect(port: u16) -> anyhow::Result<Self> {
        let url = format!("ws://127.0.0.1:{port}/ws");
        let (socket, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        .with_context(|| format!("connecting {url} timed out"))?
        .with_context(|| format!("connecting {url}"))?;
        let (sender, received) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let (_, mut incoming) = socket.split();
            while let Some(message) = incoming.next().await {
                let value = match message {
                    Ok(Message::Text(text)) => serde_json::from_str(text.as_str())
                        .unwrap_or_else(|_| Value::String(format!("not JSON: {}", text.as_str()))),
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
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        let mut started = BTreeSet::new();
        let mut ended = BTreeSet::new();
        loop {
            let all_ended = !started.is_empty() && started.is_subset(&ended);
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

impl Drop for EventStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
