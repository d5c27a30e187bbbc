//! The one HTTP client of the test suites: reqwest over loopback, as configured
//! in [`client`], and the few request shapes the suites use, each answering the
//! status code and the body as text.

use anyhow::Context;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::{Client, Method};
use std::sync::OnceLock;
use std::time::Duration;

/// Bound of one request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The client every suite shares. It follows no redirect (a test checks the
/// `303` itself) and ignores `HTTP_PROXY` (loopback only). It keeps no idle
/// connection: each `#[tokio::test]` runs its own runtime, and a pooled
/// connection dies with the runtime that opened it, so reusing it from the next
/// test would fail at random.
pub fn client() -> anyhow::Result<&'static Client> {
    static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();
    let built = CLIENT.get_or_init(|| {
        Client::builder()
            .no_proxy()
            .redirect(Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("{e:#}"))
    });
    match built {
        Ok(client) => Ok(client),
        Err(e) => anyhow::bail!("building the HTTP client: {e}"),
    }
}

/// `http://127.0.0.1:<port><path>`.
pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

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
    request_with(port, method, path, &[], token, json).await
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

/// One request (bounded) with exactly these headers and this body, whatever
/// its type (forms, XML, signed JSON): the status code and the body as text.
pub async fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    exchange(port, method, path, headers, Some(body)).await
}

/// `GET http://127.0.0.1:<port><path>`: the status code and the headers of
/// the answer, names in lower case (its body read and dropped).
pub async fn get_headers(port: u16, path: &str) -> anyhow::Result<(u16, Vec<(String, String)>)> {
    let response = client()?
        .get(url(port, path))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    response
        .bytes()
        .await
        .with_context(|| format!("GET {path}: reading the body"))?;
    Ok((status, headers))
}

/// One bounded request with exactly these headers, and `body` when given.
async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let verb = Method::from_bytes(method.as_bytes())
        .with_context(|| format!("{method:?} is not an HTTP method"))?;
    let mut request = client()?
        .request(verb, url(port, path))
        .timeout(REQUEST_TIMEOUT);
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("{value:?} is not a header value"))?;
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .with_context(|| format!("{method} {path}: reading the body"))?;
    Ok((status, text))
}
