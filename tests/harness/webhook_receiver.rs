//! Receivers for outbound webhooks: a small HTTP/1.1 server on loopback, plain
//! or over TLS with a certificate made at test time by a throwaway CA, that
//! records every request and answers 200.
//!
//! One request per connection (`Connection: close`): once a receiver is
//! stopped, nothing more reaches it.

use anyhow::Context;
use hmac::{Hmac, Mac};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// Largest request accepted, headers and body.
const MAX_REQUEST: usize = 1024 * 1024;
/// Bound of one connection, TLS handshake included.
const CONNECTION_LIMIT: Duration = Duration::from_secs(10);

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path, e.g. `/hook`.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body as text.
    pub body: String,
}

impl Received {
    /// Asserts `X-Fiche-Signature` is the HMAC-SHA256 of the body with `secret`.
    pub fn verify(&self, secret: &str) {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            panic!("HMAC takes any key");
        };
        mac.update(self.body.as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            self.headers.get("x-fiche-signature"),
            Some(&expected),
            "{self:?}"
        );
    }
}

/// A running receiver: its port, what it received, and its task (abort it to
/// take the receiver down).
pub struct Receiver {
    /// The bound port on 127.0.0.1.
    pub port: u16,
    /// Requests, in the order they were read.
    pub requests: mpsc::UnboundedReceiver<Received>,
    /// The accept loop.
    pub task: JoinHandle<()>,
}

/// A plain HTTP receiver on 127.0.0.1:`port` (0: any free port).
pub async fn plain(port: u16) -> anyhow::Result<Receiver> {
    start(port, None).await
}

/// An HTTPS receiver on 127.0.0.1:`port` (0: any) presenting `pki`'s server
/// certificate.
pub async fn tls(port: u16, pki: &TestPki) -> anyhow::Result<Receiver> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.server_cert.clone(), pki.ca_cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
        )?;
    start(port, Some(TlsAcceptor::from(Arc::new(config)))).await
}

async fn start(port: u16, tls: Option<TlsAcceptor>) -> anyhow::Result<Receiver> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the webhook receiver on port {port}"))?;
    let port = listener.local_addr()?.port();
    let (tx, requests) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                // A client that gives up the handshake (untrusted certificate)
                // or stalls just ends its connection.
                let _ = tokio::time::timeout(CONNECTION_LIMIT, async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_one(stream, &tx).await;
                            }
                        }
                        None => serve_one(stream, &tx).await,
                    }
                })
                .await;
            });
        }
    });
    Ok(Receiver {
        port,
        requests,
        task,
    })
}

/// Reads one request, records it, answers 200 and closes.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    tx: &mpsc::UnboundedSender<Received>,
) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) if raw.len() + n <= MAX_REQUEST => raw.extend_from_slice(&buf[..n]),
            Ok(_) => return,
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let path = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if end + 4 + length > MAX_REQUEST {
        return;
    }
    while raw.len() < end + 4 + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned();
    let _ = tx.send(Received {
        path,
        headers,
        body,
    });
    if stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = stream.shutdown().await;
    }
}

/// A throwaway CA and a server certificate it signed for `localhost` and
/// 127.0.0.1, made fresh by each test.
pub struct TestPki {
    /// The CA certificate, PEM: what a target's `ca_file` holds.
    pub ca_pem: String,
    ca_cert: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// A new CA named `name` and its server certificate.
    pub fn generate(name: &str) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server = server_params.signed_by(&server_key, &ca, &ca_key)?;
        Ok(Self {
            ca_pem: ca.pem(),
            ca_cert: ca.der().clone(),
            server_cert: server.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }
}
