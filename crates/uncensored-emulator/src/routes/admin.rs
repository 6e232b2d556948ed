//! The emulator's own routes under `/_emulator`, outside the API: statistics
//! and reset, for tests and benchmarks.

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::{AppState, Stats};

/// `GET /_emulator/stats`: what has happened so far.
pub async fn stats(State(state): State<AppState>) -> axum::Json<Stats> {
    axum::Json(state.stats())
}

/// `POST /_emulator/reset`: forget jobs, caches, windows and statistics.
pub async fn reset(State(state): State<AppState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}
