//! `GET /v1/images/generation/jobs/{job_id}`: a job as its owner sees it.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::middleware::Account;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire;

/// `GET /v1/images/generation/jobs/{job_id}`: only the owner sees a job.
pub async fn get_job(
    State(state): State<AppState>,
    axum::Extension(Account(account)): axum::Extension<Account>,
    Path(job_id): Path<String>,
) -> Response {
    match state.job(&job_id).filter(|job| job.owner == account.name) {
        Some(job) => axum::Json(wire::job(&state, &job)).into_response(),
        None => {
            ApiError::not_found(Some("job_id"), format!("No job with id {job_id}")).into_response()
        }
    }
}
