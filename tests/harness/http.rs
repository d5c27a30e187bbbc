//! A minimal HTTP/1.1 client over loopback, enough for `/healthz`, the login and
//! `/api/calls/live` (the crate avoids an HTTP client dependency).

use anyhow::{bail, Context};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound of one request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body accepted.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// `GET http://127.0.0.1:<port><path>`: the status code and the body as text.
pub async fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    request(port, "GET", path, None, None).await
}

/// `GET` with a session token as `Authorization: Bearer`.
pub async fn get_as(port: u16, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    request(port, "GET", path, Some(token), None).await
}

/// One request (bounded, connection included), with an optional session token
/// and JSON body: the status code and the body as text.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(REQUEST_TIMEOUT, send(port, method, path, token, json))
        .await
        .with_context(|| format!("{method} {path} timed out"))?
}

/// [`request`] with extra header lines (`X-Forwarded-For`, `Origin`, …).
pub async fn request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        send_with(port, method, path, headers, token, json),
    )
    .await
    .with_context(|| format!("{method} {path} timed out"))?
}

/// One request (bounded, connection included) with exactly these header lines
/// and this body, whatever its type (forms, XML, signed JSON): the status code
/// and the body as text.
pub async fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        exchange(port, method, path, headers, Some(body)),
    )
    .await
    .with_context(|| format!("{method} {path} timed out"))?
}

/// `GET http://127.0.0.1:<port><path>`: the status code and the header
/// lines of the answer (its body read and dropped).
pub async fn get_headers(port: u16, path: &str) -> anyhow::Result<(u16, Vec<(String, String)>)> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {path} timed out"))??;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, _)) = text.split_once("\r\n\r\n") else {
        bail!("no end of headers in {text:?}");
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

async fn send(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    send_with(port, method, path, &[], token, json).await
}

async fn send_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut all = headers.to_vec();
    if let Some(bearer) = &bearer {
        all.push(("Authorization", bearer));
    }
    if json.is_some() {
        all.push(("Content-Type", "application/json"));
    }
    exchange(port, method, path, &all, json).await
}

/// One request with exactly these header lines, and `body` (with its
/// `Content-Length`) when given: the status code and the body as text,
/// de-chunked. Not bounded in time: see [`raw`].
async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or_default());
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("response is not UTF-8")?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no end of headers in {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)?));
    }
    Ok((status, body.to_owned()))
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("truncated chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).context("truncated chunk")?;
        out.push_str(chunk);
        body = rest.get(size + 2..).context("truncated chunk end")?;
    }
}
