//! The web pages (`web-popup/`), built into the binary so that `fiche` serves
//! them from any working directory, after `cargo install`, or copied alone to a
//! server. `web_root` (`FICHE_WEB_ROOT`) serves them from a folder instead, for
//! working on the pages without a rebuild.

use axum::body::Body;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use rust_embed::RustEmbed;
use std::path::{Path, PathBuf};
use tower_http::services::ServeDir;
use tracing::warn;

/// The pages, read at build time.
#[derive(RustEmbed)]
#[folder = "../../web-popup/"]
struct Pages;

/// What a page may load: its own scripts, styles and images, and its own
/// server's websocket; no inline script, no framing, no other origin. The
/// pages render untrusted text (a caller's display name) with text nodes
/// only; this is the second wall behind that.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'; object-src 'none'";

/// The security headers of every answer (pages and API alike).
pub(super) fn security_headers<S>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::http::HeaderValue;
    use tower_http::set_header::SetResponseHeaderLayer;
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}

/// The page a request names: `/` and folders are their `index.html`.
fn page_path(uri: &Uri) -> String {
    let path = uri.path().trim_start_matches('/');
    if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    }
}

async fn embedded(uri: Uri) -> Response {
    let path = page_path(&uri);
    match Pages::get(&path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            (
                [(header::CONTENT_TYPE, mime)],
                Body::from(file.data.into_owned()),
            )
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The service that answers every path the API does not: the built-in pages,
/// or those of `web_root` when one is configured.
pub(super) fn service(web_root: Option<PathBuf>) -> MethodRouter {
    match web_root {
        Some(root) => {
            if !Path::new(&root).join("index.html").is_file() {
                warn!(
                    web_root = %root.display(),
                    "web_root has no index.html: the pages will answer 404 (unset FICHE_WEB_ROOT to use the built-in pages)"
                );
            }
            axum::routing::get_service(ServeDir::new(root).append_index_html_on_directories(true))
        }
        None => axum::routing::get(embedded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_built_in() {
        for page in [
            "index.html",
            "board.html",
            "login.html",
            "agent.js",
            "style.css",
        ] {
            assert!(Pages::get(page).is_some(), "{page} is not built in");
        }
        assert_eq!(page_path(&Uri::from_static("/")), "index.html");
        assert_eq!(page_path(&Uri::from_static("/login.html")), "login.html");
    }
}
