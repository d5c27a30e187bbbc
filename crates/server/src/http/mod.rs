//! The HTTP surface: health, the live-call API, the websocket and the web pages.

mod calls;
mod ws;

use crate::pipeline::LiveTable;
use axum::routing::get;
use axum::{Json, Router};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast;
use tower_http::services::ServeDir;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The live-call table the pipeline maintains.
    pub live: LiveTable,
    /// Every call event as JSON, for the websocket.
    pub fanout: broadcast::Sender<Arc<str>>,
}

/// The application: API routes, then the web pages from `web_root`.
pub fn router(state: AppState, web_root: PathBuf) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/calls/live", get(calls::live))
        .route("/ws", get(ws::upgrade))
        .fallback_service(ServeDir::new(web_root).append_index_html_on_directories(true))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
