//! `GET /api/calls/live`: the live-call table.

use super::AppState;
use axum::extract::State;
use axum::Json;
use fiche_pbx::LiveCall;

/// Live calls and calls ended within the linger time, oldest first.
pub(super) async fn live(State(state): State<AppState>) -> Json<Vec<LiveCall>> {
    Json(state.live.snapshot())
}
