//! `POST /v1/images/generations`: the `Idempotency-Key` (replay, reuse, in
//! flight), then validation, scope, moderation and the hold of its price,
//! then the job, sync (`200` once it ends) or async (`202` at once, the
//! webhook later); the price is charged when the job completes and released
//! when it fails.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uncensored_api::limits::idempotency_key;

use super::middleware::{Account, has_scope};
use super::validation::validate;
use crate::config::KeyConfig;
use crate::error::ApiError;
use crate::state::{AppState, Begin, Job, JobState};
use crate::wire;

/// `POST /v1/images/generations`.
pub async fn generate_image(
    State(state): State<AppState>,
    axum::Extension(Account(account)): axum::Extension<Account>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str().ok().filter(|k| valid_idempotency_key(k)) {
            Some(key) => Some(key.to_string()),
            None => {
                return ApiError::invalid(
                    Some("Idempotency-Key"),
                    format!(
                        "Idempotency-Key must be {} to {} characters matching {}",
                        idempotency_key::MIN_LENGTH,
                        idempotency_key::MAX_LENGTH,
                        idempotency_key::PATTERN
                    ),
                )
                .into_response();
            }
        },
    };
    let body = match axum::body::to_bytes(request.into_body(), state.config.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => return ApiError::too_large(state.config.max_body_bytes).into_response(),
    };

    let Some(key) = idempotency_key else {
        let (status, body) = run_detached(&state, account, headers, body, None).await;
        return json_response(status, body, false);
    };
    // Same body means the same JSON value; bytes when it is not JSON.
    let fingerprint = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => serde_json::to_vec(&value).expect("a JSON value serialises"),
        Err(_) => body.to_vec(),
    };
    match state.idempotency_begin(&account.name, &key, &fingerprint) {
        Begin::Replay { status, body } => {
            state.with_stats(|s| s.idempotent_replays += 1);
            json_response(status, body, true)
        }
        Begin::Reuse => ApiError::key_reuse().into_response(),
        Begin::InFlight => ApiError::in_flight().into_response(),
        Begin::Started => {
            let (status, body) = run_detached(&state, account, headers, body, Some(key)).await;
            json_response(status, body, false)
        }
    }
}

/// The spec's Idempotency-Key pattern, compiled once (`None` if it does not
/// compile: then no key is valid, as the generated client has it).
static IDEMPOTENCY_KEY_PATTERN: std::sync::LazyLock<Option<regress::Regex>> =
    std::sync::LazyLock::new(|| regress::Regex::new(idempotency_key::PATTERN).ok());

/// Whether `key` follows the Idempotency-Key rules of openapi.yaml: its
/// `minLength`, `maxLength` and `pattern`.
fn valid_idempotency_key(key: &str) -> bool {
    (idempotency_key::MIN_LENGTH..=idempotency_key::MAX_LENGTH).contains(&key.chars().count())
        && IDEMPOTENCY_KEY_PATTERN
            .as_ref()
            .is_some_and(|pattern| pattern.find(key).is_some())
}

/// Processes a generation in a task of its own, as the service does: a client
/// that goes away (a dropped connection, a killed process) does not cancel a
/// job that may already be charged, and its answer is still cached for the
/// retry that carries the same Idempotency-Key.
async fn run_detached(
    state: &AppState,
    account: KeyConfig,
    headers: HeaderMap,
    body: Bytes,
    key: Option<String>,
) -> (u16, Bytes) {
    let task = tokio::spawn({
        let state = state.clone();
        let (account, key) = (account.clone(), key.clone());
        async move {
            let outcome = answer(process(&state, &account, &headers, &body, key.as_deref()).await);
            if let Some(key) = &key {
                state.idempotency_finish(&account.name, key, Some(outcome.clone()));
            }
            outcome
        }
    });
    match task.await {
        Ok(outcome) => outcome,
        Err(_) => {
            if let Some(key) = &key {
                state.idempotency_finish(&account.name, key, None);
            }
            answer(Err(ApiError::server(false)))
        }
    }
}

/// The status and serialised body of an outcome, as the idempotency cache keeps it.
fn answer(outcome: Result<(StatusCode, Value), ApiError>) -> (u16, Bytes) {
    let (status, value) = match outcome {
        Ok((status, value)) => (status, value),
        Err(error) => (error.status, error.body()),
    };
    (
        status.as_u16(),
        Bytes::from(serde_json::to_vec(&value).expect("a JSON value serialises")),
    )
}

/// A JSON response, marked `Idempotent-Replay: true` when it is a replay.
fn json_response(status: u16, body: Bytes, replay: bool) -> Response {
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a JSON response builds");
    if replay {
        response
            .headers_mut()
            .insert("idempotent-replay", HeaderValue::from_static("true"));
    }
    response
}

/// Validates, checks scope, moderation and balance, charges, and runs the job.
async fn process(
    state: &AppState,
    account: &KeyConfig,
    headers: &HeaderMap,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<(StatusCode, Value), ApiError> {
    let valid = validate(state, headers, body)?;
    if !has_scope(account, Some(&valid.model.name)) {
        return Err(ApiError::forbidden(format!(
            "This API key's scopes do not permit {}",
            valid.model.name
        ))
        .with_param("model"));
    }
    let lowered = valid.prompt.to_lowercase();
    if state
        .config
        .blocked_terms
        .iter()
        .any(|term| lowered.contains(&term.to_lowercase()))
    {
        return Err(ApiError::forbidden("Content moderation failed")
            .with_param("prompt")
            .with_code("content_moderation"));
    }
    let id = state.new_job_id();
    state
        .hold(
            &account.name,
            &id,
            valid.price,
            &valid.model.name,
            idempotency_key,
        )
        .map_err(ApiError::refused)?;

    let g = state.config.generation_seconds;
    let (generation_time, fails) = state.with_rng(|rng| {
        let drawn = (rng.between(g.min, g.max) * 10.0).round() / 10.0;
        let seconds = valid.generation_seconds.unwrap_or(drawn);
        (seconds, rng.chance(state.config.faults.failed_job_rate))
    });
    let job = Job {
        id: id.clone(),
        owner: account.name.clone(),
        prompt: valid.prompt,
        model: valid.model.name.clone(),
        width: valid.width,
        height: valid.height,
        seed: valid.seed,
        image_bytes: valid.image_bytes,
        created_at: chrono::Utc::now(),
        generation_time,
        status: JobState::Processing,
    };
    state.insert_job(job.clone());
    // A time scale of any size (a flag) gives a wait, never a panic.
    let seconds = generation_time * state.config.time_scale;
    let real_time = if seconds.is_nan() {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(seconds.clamp(0.0, 3600.0)).unwrap_or_default()
    };

    match valid.callback_url {
        Some(url) => {
            let background = state.clone();
            let target = url.clone();
            tokio::spawn(async move {
                if background.pause(real_time).await
                    && let Some(job) = complete(&background, &id, fails)
                {
                    crate::webhook::deliver(background, job, target).await;
                }
            });
            Ok((StatusCode::ACCEPTED, wire::accepted(state, &job, &url)))
        }
        None => {
            if !state.pause(real_time).await {
                return Err(ApiError::server(true));
            }
            let job = complete(state, &id, fails).expect("the job was just inserted");
            Ok((StatusCode::OK, wire::finished(state, &job)))
        }
    }
}

/// Ends a job as completed (charging what it holds) or failed (releasing it).
fn complete(state: &AppState, id: &str, fails: bool) -> Option<Job> {
    let now = chrono::Utc::now();
    let job = state.finish_job(
        id,
        if fails {
            JobState::Failed(now)
        } else {
            JobState::Completed(now)
        },
    )?;
    if fails {
        state.release(&job.owner, &job.id);
        state.with_stats(|s| s.faults.failed_jobs += 1);
    } else {
        state.settle(&job.owner, &job.id);
    }
    Some(job)
}
