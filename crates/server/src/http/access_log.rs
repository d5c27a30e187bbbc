//! The HTTP access log: one `tracing` line per request (method, path, status,
//! time, user id), target `fiche::access`. Secrets stay out: the CTI token in
//! `/api/v1/cti/{token}` (and the sipgate, Placetel, Aircall and Ringover
//! routes) is replaced, query strings are not logged (they may
//! carry numbers a customer typed), and no header is logged at all (so no
//! `Authorization` or cookie either).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::borrow::Cow;
use std::time::Instant;
use tracing::info;

/// Who made a request, set on the response by the session layer.
#[derive(Debug, Clone, Copy)]
pub struct LoggedUser(pub i64);

/// The routes whose second segment after `/api/v1/` is a CTI token.
const TOKEN_ROUTES: [&str; 5] = ["cti", "sipgate", "placetel", "aircall", "ringover"];

/// The path as logged: the CTI token is never written anywhere.
pub fn loggable_path(path: &str) -> Cow<'_, str> {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Cow::Borrowed(path);
    };
    let Some((route, after)) = rest.split_once('/') else {
        return Cow::Borrowed(path);
    };
    if !TOKEN_ROUTES.contains(&route) || after.is_empty() {
        return Cow::Borrowed(path);
    }
    match after.split_once('/').map_or("", |(_, tail)| tail) {
        "" => Cow::Owned(format!("/api/v1/{route}/<token>")),
        tail => Cow::Owned(format!("/api/v1/{route}/<token>/{tail}")),
    }
}

/// The middleware writing one line per request.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = loggable_path(request.uri().path()).into_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let user = response.extensions().get::<LoggedUser>().map(|u| u.0);
    info!(
        target: "fiche::access",
        %method,
        path = ?path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        user,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cti_token_is_never_in_a_logged_path() {
        assert_eq!(
            loggable_path("/api/v1/cti/s3cr3t-t0ken"),
            "/api/v1/cti/<token>"
        );
        assert_eq!(
            loggable_path("/api/v1/cti/s3cr3t-t0ken/extra"),
            "/api/v1/cti/<token>/extra"
        );
        assert_eq!(loggable_path("/api/calls/live"), "/api/calls/live");
        assert_eq!(loggable_path("/api/v1/cti/"), "/api/v1/cti/");
        assert_eq!(
            loggable_path("/api/v1/sipgate/s3cr3t/in"),
            "/api/v1/sipgate/<token>/in"
        );
        for route in ["placetel", "aircall", "ringover"] {
            assert_eq!(
                loggable_path(&format!("/api/v1/{route}/s3cr3t")),
                format!("/api/v1/{route}/<token>")
            );
        }
    }
}
