//! Logging in to the `fiche` under test: every suite starts it with
//! `FICHE_ADMIN_PASSWORD`, so the first run creates `admin` with a known password.

use crate::http;
use anyhow::{bail, Context};

/// The `FICHE_ADMIN_PASSWORD` the harness starts Fiche with.
pub const ADMIN_PASSWORD: &str = "e2e-admin-password";

/// Logs in as `admin`; the session token, for `Authorization: Bearer`.
pub async fn admin_token(port: u16) -> anyhow::Result<String> {
    login(port, "admin", ADMIN_PASSWORD).await
}

/// Logs in; the session token.
pub async fn login(port: u16, login: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "login": login, "password": password }).to_string();
    let (status, answer) = http::request(port, "POST", "/api/login", None, Some(&body)).await?;
    if status != 200 {
        bail!("POST /api/login as {login} answered {status}: {answer}");
    }
    let answer: serde_json::Value =
        serde_json::from_str(&answer).with_context(|| format!("login answer: {answer}"))?;
    answer["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token in the login answer: {answer}"))
}
