//! The bare relay the pop path is measured against, in a process of its own
//! (this bench binary started again with `POP_BENCH_RELAY_CHILD`): HEP in over
//! UDP, the INVITE's extension and Call-ID read from the raw text, a pop frame
//! carrying the raw INVITE queued to that extension's websocket, and nothing
//! else (no tracking, no live table, no card, no store, no session). It uses
//! the same crates and runtime as Fiche, and one bounded queue drained by one
//! writer task per socket as Fiche's hub and pump do, so the difference
//! between the two runs is what Fiche does beyond the wire.

use fiche_pbx::hep;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The environment variable that makes this binary the relay: `<hep port>,<ws port>`.
pub(crate) const CHILD: &str = "POP_BENCH_RELAY_CHILD";
/// Frames one socket may have queued, as in Fiche's hub.
const QUEUE: usize = 256;

type Sockets = Arc<Mutex<HashMap<String, mpsc::Sender<Message>>>>;

/// The relay process, stopped when dropped.
pub(crate) struct Relay {
    child: Child,
    pub(crate) hep: SocketAddr,
    pub(crate) ws: SocketAddr,
}

impl Relay {
    /// Starts the relay on the given loopback ports and waits until it listens.
    pub(crate) fn start(hep_port: u16, ws_port: u16) -> anyhow::Result<Relay> {
        let child = Command::new(std::env::current_exe()?)
            .env(CHILD, format!("{hep_port},{ws_port}"))
            .stdin(Stdio::null())
            .spawn()?;
        let relay = Relay {
            child,
            hep: ([127, 0, 0, 1], hep_port).into(),
            ws: ([127, 0, 0, 1], ws_port).into(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(relay.ws).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the bare relay did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(relay)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens one socket per extension, each naming its extension first.
    pub(crate) async fn sockets(&self, extensions: &[String]) -> anyhow::Result<Vec<super::Ws>> {
        let mut sockets = Vec::with_capacity(extensions.len());
        for extension in extensions {
            let (mut ws, _) =
                tokio_tungstenite::connect_async(format!("ws://{}/", self.ws)).await?;
            ws.send(Message::Text(extension.as_str().into())).await?;
            sockets.push(ws);
        }
        // The relay registers each socket on its first message: let it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(sockets)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay's own `main`: serves until killed.
pub(crate) fn serve(ports: &str) -> anyhow::Result<()> {
    let (hep_port, ws_port) = ports
        .split_once(',')
        .ok_or_else(|| anyhow::anyhow!("{CHILD}: expected <hep port>,<ws port>"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let udp = tokio::net::UdpSocket::bind(("127.0.0.1", hep_port.parse::<u16>()?)).await?;
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", ws_port.parse::<u16>()?)).await?;
        let sockets: Sockets = Arc::default();
        tokio::spawn(accept(tcp, sockets.clone()));
        relay(udp, sockets).await
    })
}

async fn accept(tcp: tokio::net::TcpListener, sockets: Sockets) {
    while let Ok((stream, _)) = tcp.accept().await {
        let sockets = sockets.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (mut sink, mut source) = ws.split();
            let Some(Ok(Message::Text(extension))) = source.next().await else {
                return;
            };
            let (tx, mut rx) = mpsc::channel(QUEUE);
            sockets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(extension.to_string(), tx);
            // Whatever the client says afterwards is read and dropped.
            tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
            while let Some(frame) = rx.recv().await {
                if sink.send(frame).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn relay(udp: tokio::net::UdpSocket, sockets: Sockets) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = udp.recv(&mut buf).await?;
        let Ok(packet) = hep::decode(&buf[..n]) else {
            continue;
        };
        let Ok(sip) = std::str::from_utf8(&packet.payload) else {
            continue;
        };
        let Some((extension, call_id)) = invite_target(sip) else {
            continue;
        };
        let frame = serde_json::json!({
            "type": "pop",
            "extension": extension,
            "call": { "source_key": call_id },
            "sip": sip,
        })
        .to_string();
        let queue = sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(extension)
            .cloned();
        if let Some(queue) = queue {
            // Never waits, as Fiche's hub never does: a full queue drops.
            let _ = queue.try_send(Message::Text(frame.into()));
        }
    }
}

/// The Request-URI's user and the Call-ID of an INVITE.
fn invite_target(sip: &str) -> Option<(&str, &str)> {
    let uri = sip.strip_prefix("INVITE sip:")?;
    let extension = uri.split(['@', ';', ' ']).next()?;
    let call_id = sip
        .split("\r\n")
        .find_map(|line| line.strip_prefix("Call-ID:"))?
        .trim();
    Some((extension, call_id))
}
