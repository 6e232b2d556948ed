//! The HTTP surface: the API operations under `/api`, the image files, and
//! the `/_emulator` admin routes. This module only routes; every handler is a
//! plain async fn over the one [`AppState`]:
//!
//! - [`middleware`]: auth, rate limit, fault injection, rate-limit headers and
//!   statistics, around every API request;
//! - [`generation`]: `POST /v1/images/generations`, with [`validation`] for
//!   what it accepts and what it costs;
//! - [`jobs`]: `GET /v1/images/generation/jobs/{job_id}`;
//! - [`billing`]: `GET /v1/billing/balance`, `GET /v1/billing/transactions`,
//!   `POST /v1/billing/estimate` and `PUT /v1/billing/limits`, over the
//!   ledger;
//! - [`images`]: the generated JPEGs;
//! - [`admin`]: `/_emulator/stats` and `/_emulator/reset`.
//!
//! The JSON bodies about jobs come from [`crate::wire`].

mod admin;
mod billing;
mod generation;
mod images;
mod jobs;
mod middleware;
mod validation;

use axum::Router;
use axum::routing::{get, post, put};

use crate::error::ApiError;
use crate::state::AppState;

/// The emulator's whole router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/images/generations", post(generation::generate_image))
        .route("/v1/images/generation/jobs/{job_id}", get(jobs::get_job))
        .route("/v1/billing/balance", get(billing::balance))
        .route("/v1/billing/transactions", get(billing::transactions))
        .route("/v1/billing/estimate", post(billing::estimate))
        .route("/v1/billing/limits", put(billing::set_limits))
        .fallback(|| async { ApiError::not_found(None, "No such API route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::api_middleware,
        ));
    Router::new()
        .nest("/api", api)
        .route("/images/{file}", get(images::image))
        .route("/_emulator/stats", get(admin::stats))
        .route("/_emulator/reset", post(admin::reset))
        .fallback(|| async { ApiError::not_found(None, "No such route") })
        .with_state(state)
}
