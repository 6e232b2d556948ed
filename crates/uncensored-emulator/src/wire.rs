//! The JSON the emulator sends about jobs: the `generate_image` answers (`200`
//! and `202`), the job `get_generation_job` reports, and the webhook payload.
//! This is the one place that knows those wire field names; the error envelope
//! lives with [`ApiError`](crate::error::ApiError).

use chrono::SecondsFormat;
use serde_json::{Map, Value, json};

use crate::state::{Job, JobState, Shared};

/// A time as the API writes it: RFC 3339, whole seconds, UTC with `Z`.
fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Where a completed job's image is served.
fn image_url(state: &Shared, job: &Job) -> String {
    format!("{}/images/{}.jpg", state.origin, job.id)
}

/// The (undocumented) reason a failed job carries: a `JobError`.
fn failure() -> Value {
    json!({"message": "The generation failed upstream", "code": "generation_failed"})
}

/// The `200` answer of a sync generation that has ended (`GenerationResponse`):
/// `url` and `generation_time` when it completed, `error` when it failed.
pub fn finished(state: &Shared, job: &Job) -> Value {
    let mut body = json!({"job_id": job.id, "status": job.status.name(), "model": job.model});
    match job.status {
        JobState::Completed(_) => {
            body["url"] = json!(image_url(state, job));
            body["generation_time"] = json!(job.generation_time);
        }
        _ => body["error"] = failure(),
    }
    body
}

/// The `202` answer of an async generation (`GenerationResponse`): where to
/// poll the job and where its result will be POSTed.
pub fn accepted(state: &Shared, job: &Job, webhook_url: &url::Url) -> Value {
    json!({
        "job_id": job.id,
        "status": job.status.name(),
        "status_url": format!("{}/v1/images/generation/jobs/{}", state.base_url, job.id),
        "webhook_url": webhook_url.as_str(),
        "created_at": timestamp(job.created_at),
    })
}

/// A job as `GET /v1/images/generation/jobs/{job_id}` shows it (`GenerationJob`).
pub fn job(state: &Shared, job: &Job) -> Value {
    let mut body = Map::new();
    body.insert("job_id".into(), json!(job.id));
    body.insert("status".into(), json!(job.status.name()));
    body.insert("model".into(), json!(job.model));
    body.insert("created_at".into(), json!(timestamp(job.created_at)));
    match &job.status {
        JobState::Processing => {}
        JobState::Completed(at) => {
            body.insert("image_url".into(), json!(image_url(state, job)));
            body.insert("completed_at".into(), json!(timestamp(*at)));
            body.insert("generation_time".into(), json!(job.generation_time));
        }
        JobState::Failed(_) => {
            body.insert("error".into(), failure());
        }
    }
    Value::Object(body)
}

/// The callback POSTed to `callback_url` once an async job ends
/// (`WebhookPayload`), with the job as `result`.
pub fn webhook_payload(state: &Shared, finished: &Job) -> Value {
    let status = match finished.status {
        JobState::Completed(_) => "success",
        _ => "failed",
    };
    json!({
        "request_id": finished.id,
        "status": status,
        "result": job(state, finished),
        "timestamp": timestamp(chrono::Utc::now()),
    })
}
