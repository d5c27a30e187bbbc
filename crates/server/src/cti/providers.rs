//! The cloud phone systems' own webhook formats, beside Zammad's Generic CTI,
//! each on a route of its own with the same token scheme (`fiche cti token add`):
//!
//! - `POST /api/v1/sipgate/{token}[/{direction}]`: sipgate.io's push API. Its
//!   `newCall` is answered in XML naming where to send `answer` and `hangup`
//!   (sipgate sends them only then), `<Reject reason="busy"/>` for a blocked
//!   caller, `<Dial callerId>` for outbound caller-ID routing, as Zammad's
//!   sipgate controller does. The URLs are `[cti] public_url`, else the
//!   request's `Host` and `X-Forwarded-Proto` (the answer goes back to whoever
//!   holds the token, so a forged `Host` only misleads its own sender).
//! - `POST /api/v1/placetel/{token}`: Placetel's `IncomingCall`, `OutgoingCall`,
//!   `CallAccepted`, `HungUp`, answered in XML as Zammad's Placetel controller does.
//! - `POST /api/v1/aircall/{token}`: Aircall's call webhooks. Aircall signs
//!   nothing; each body carries the webhook's `token`, compared with
//!   `[cti.aircall] token` (developer.aircall.io, "Webhooks": "verify the
//!   token field").
//! - `POST /api/v1/ringover/{token}`: Ringover's call webhooks, whose
//!   `X-Ringover-Webhook-Signature` header is a JWT signed HS512 with the
//!   webhook's key (`[cti.ringover] secret`), as Ringover's example receivers
//!   (github.com/ringover/ringover-webhooks) verify it.
//!
//! Requests without a valid provider secret are refused (401) before they
//! are read; without the secret configured, the route refuses everything.

use super::{body_pairs, CtiContext, Refused};
use crate::config::Config;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use fiche_pbx::cti::{aircall, placetel, ringover, xml, CtiError, CtiEvent, CtiRequest};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha512;
use tracing::{debug, warn};

/// The header Ringover signs its webhooks in.
pub const RINGOVER_SIGNATURE: &str = "x-ringover-webhook-signature";

/// What the providers' routes need from the configuration.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    /// Fiche's public base URL, without a trailing `/`.
    public_url: Option<String>,
    /// Aircall's webhook token.
    aircall_token: Option<String>,
    /// Ringover's webhook key.
    ringover_secret: Option<String>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("public_url", &self.public_url)
            .field(
                "aircall_token",
                &self.aircall_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "ringover_secret",
                &self.ringover_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The settings from the configuration.
pub fn settings(config: &Config) -> ProviderSettings {
    let cti = &config.cti;
    ProviderSettings {
        public_url: cti
            .public_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty()),
        aircall_token: cti
            .aircall
            .as_ref()
            .map(|a| a.token.trim().to_owned())
            .filter(|t| !t.is_empty()),
        ringover_secret: cti
            .ringover
            .as_ref()
            .map(|r| r.secret.clone())
            .filter(|s| !s.is_empty()),
    }
}

/// The providers' routes.
pub(super) fn routes() -> Router<CtiContext> {
    Router::new()
        .route("/api/v1/sipgate/{token}", post(sipgate))
        .route(
            "/api/v1/sipgate/{token}/{direction}",
            post(sipgate_directed),
        )
        .route("/api/v1/placetel/{token}", post(placetel_route))
        .route("/api/v1/aircall/{token}", post(aircall_route))
        .route("/api/v1/ringover/{token}", post(ringover_route))
}

fn xml_answer(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

fn xml_refused(refused: Refused) -> Response {
    xml_answer(refused.status, xml::error(&refused.message))
}

async fn sipgate(
    State(context): State<CtiContext>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sipgate_request(context, token, None, headers, body).await
}

async fn sipgate_directed(
    State(context): State<CtiContext>,
    Path((token, direction)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sipgate_request(context, token, Some(direction), headers, body).await
}

async fn sipgate_request(
    context: CtiContext,
    token: String,
    path_direction: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = match context.authenticate(&token).await {
        Ok(name) => name,
        Err(refused) => return xml_refused(refused),
    };
    let mut request = match body_pairs(&headers, &body) {
        Ok(pairs) => CtiRequest::from_pairs(pairs),
        Err(message) => return xml_refused(Refused::new(StatusCode::BAD_REQUEST, message)),
    };
    if let Some(direction) = &path_direction {
        if !matches!(direction.as_str(), "in" | "out") {
            return xml_refused(CtiError::BadDirection(direction.clone()).into());
        }
        // sipgate names the direction on `newCall` only; the URL Fiche gave
        // it carries the direction for the call's later requests.
        request.direction.get_or_insert_with(|| direction.clone());
    }
    let direction = request
        .direction
        .clone()
        .or(path_direction)
        .unwrap_or_else(|| "in".to_owned());
    let callback = format!(
        "{}/api/v1/sipgate/{token}/{direction}",
        base_url(&context.0.providers, &headers)
    );
    match context.process(&name, None, &request).await {
        Ok(reply) => xml_answer(StatusCode::OK, xml::sipgate(&reply, &callback)),
        Err(refused) => xml_refused(refused),
    }
}

/// Fiche's base URL as the phone system reaches it.
fn base_url(settings: &ProviderSettings, headers: &HeaderMap) -> String {
    if let Some(url) = &settings.public_url {
        return url.clone();
    }
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("{proto}://{host}")
}

async fn placetel_route(
    State(context): State<CtiContext>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = match context.authenticate(&token).await {
        Ok(name) => name,
        Err(refused) => return xml_refused(refused),
    };
    let read = body_pairs(&headers, &body)
        .map_err(|message| Refused::new(StatusCode::BAD_REQUEST, message))
        .and_then(|pairs| placetel::read(pairs).map_err(Refused::from));
    let (event, request) = match read {
        Ok(read) => read,
        Err(refused) => return xml_refused(refused),
    };
    match context.process(&name, Some(event), &request).await {
        Ok(reply) => xml_answer(StatusCode::OK, xml::placetel(&reply)),
        Err(refused) => xml_refused(refused),
    }
}

async fn aircall_route(
    State(context): State<CtiContext>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let name = match context.authenticate(&token).await {
        Ok(name) => name,
        Err(refused) => return refused.json(),
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return Refused::new(StatusCode::BAD_REQUEST, "invalid JSON body").json();
    };
    let Some(expected) = &context.0.providers.aircall_token else {
        warn!(pbx = %name, "Aircall webhook refused: [cti.aircall] token is not configured");
        return Refused::new(
            StatusCode::UNAUTHORIZED,
            "Aircall webhook token not configured ([cti.aircall] token)",
        )
        .json();
    };
    let given = aircall::token(&value).unwrap_or_default();
    if !same_secret(given.as_bytes(), expected.as_bytes()) {
        warn!(pbx = %name, "Aircall webhook with a wrong token refused");
        return Refused::new(StatusCode::UNAUTHORIZED, "invalid Aircall webhook token").json();
    }
    match aircall::read(&value) {
        Ok(read) => provider_event(&context, &name, read).await,
        Err(e) => Refused::from(e).json(),
    }
}

async fn ringover_route(
    State(context): State<CtiContext>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = match context.authenticate(&token).await {
        Ok(name) => name,
        Err(refused) => return refused.json(),
    };
    let Some(secret) = &context.0.providers.ringover_secret else {
        warn!(pbx = %name, "Ringover webhook refused: [cti.ringover] secret is not configured");
        return Refused::new(
            StatusCode::UNAUTHORIZED,
            "Ringover webhook key not configured ([cti.ringover] secret)",
        )
        .json();
    };
    let signature = headers
        .get(RINGOVER_SIGNATURE)
        .and_then(|v| v.to_str().ok());
    if let Err(why) = verify_jwt_hs512(signature, secret, chrono::Utc::now().timestamp()) {
        warn!(pbx = %name, why, "Ringover webhook with a bad signature refused");
        return Refused::new(
            StatusCode::UNAUTHORIZED,
            format!("invalid Ringover signature: {why}"),
        )
        .json();
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return Refused::new(StatusCode::BAD_REQUEST, "invalid JSON body").json();
    };
    match ringover::read(&value) {
        Ok(read) => provider_event(&context, &name, read).await,
        Err(e) => Refused::from(e).json(),
    }
}

/// An Aircall or Ringover event: `{}` once durable. An event for a call Fiche
/// never saw begin (its webhook set up mid-call) is acknowledged and dropped:
/// both providers disable a webhook that keeps failing.
async fn provider_event(
    context: &CtiContext,
    name: &str,
    read: Option<(CtiEvent, CtiRequest)>,
) -> Response {
    let Some((event, request)) = read else {
        return Json(json!({})).into_response();
    };
    match context.process(name, Some(event), &request).await {
        Ok(_) => Json(json!({})).into_response(),
        Err(refused) if refused.status == StatusCode::NOT_FOUND => {
            debug!(pbx = %name, ?event, "event of a call never started: ignored");
            Json(json!({})).into_response()
        }
        Err(refused) => refused.json(),
    }
}

/// Equal secrets, compared in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a JWT signed HS512 with `secret` (Ringover's signature header): its
/// header names HS512, its signature is right, and it has not expired (`exp`,
/// when present, against `now` in Unix seconds).
pub fn verify_jwt_hs512(token: Option<&str>, secret: &str, now: i64) -> Result<(), &'static str> {
    let token = token.map(str::trim).ok_or("missing header")?;
    let mut parts = token.split('.');
    let (Some(head), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT");
    };
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode_json = |part: &str| -> Result<Value, &'static str> {
        let bytes = engine.decode(part).map_err(|_| "bad base64url")?;
        serde_json::from_slice(&bytes).map_err(|_| "bad JSON")
    };
    if decode_json(head)?.get("alg").and_then(Value::as_str) != Some("HS512") {
        return Err("not HS512");
    }
    let signature = engine.decode(signature).map_err(|_| "bad base64url")?;
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).map_err(|_| "bad key")?;
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| "wrong signature")?;
    if let Some(exp) = decode_json(payload)?.get("exp").and_then(Value::as_i64) {
        if exp < now {
            return Err("expired");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(head: &str, payload: &str, secret: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (h, p) = (engine.encode(head), engine.encode(payload));
        let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", engine.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn ringover_signatures_are_hs512_jwts_with_the_webhook_key() {
        let head = r#"{"alg":"HS512","typ":"JWT"}"#;
        let good = sign(head, r#"{"foo":"bar"}"#, "key");
        assert_eq!(verify_jwt_hs512(Some(&good), "key", 0), Ok(()));
        assert_eq!(
            verify_jwt_hs512(Some(&good), "other", 0),
            Err("wrong signature")
        );
        let hs256 = sign(r#"{"alg":"HS256"}"#, "{}", "key");
        assert_eq!(verify_jwt_hs512(Some(&hs256), "key", 0), Err("not HS512"));
        let expired = sign(head, r#"{"exp":100}"#, "key");
        assert_eq!(verify_jwt_hs512(Some(&expired), "key", 101), Err("expired"));
        assert_eq!(verify_jwt_hs512(Some(&expired), "key", 99), Ok(()));
        assert_eq!(verify_jwt_hs512(None, "key", 0), Err("missing header"));
        assert_eq!(verify_jwt_hs512(Some("a.b"), "key", 0), Err("not a JWT"));
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }

    #[test]
    fn the_callback_base_is_the_configured_url_else_the_request_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("fiche.example.com"));
        let none = ProviderSettings::default();
        assert_eq!(base_url(&none, &headers), "http://fiche.example.com");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(base_url(&none, &headers), "https://fiche.example.com");
        let configured = ProviderSettings {
            public_url: Some("https://pbx-hooks.example.com".into()),
            ..ProviderSettings::default()
        };
        assert_eq!(
            base_url(&configured, &headers),
            "https://pbx-hooks.example.com"
        );
    }
}
