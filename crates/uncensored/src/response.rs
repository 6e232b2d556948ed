//! What the API answers, as Rust types: the 200/202 answer as an enum, job
//! statuses that keep unknown values, and the rate-limit headers.

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use uncensored_api::types;

/// The rate-limit headers every answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute allowed for the key.
    pub limit: u32,
    /// Requests left in the current window.
    pub remaining: u32,
    /// When the window resets.
    pub reset: DateTime<Utc>,
}

impl RateLimit {
    /// Reads `x-ratelimit-*`; `None` when any of them is missing or malformed,
    /// the limit is 0, the remainder exceeds the limit, or the reset is
    /// further than [`MAX_RESET_AHEAD`] away (an API's window is a minute: a
    /// reset in the year 9999 is not a reading to pause on).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Self::parse_at(headers, Utc::now())
    }

    /// [`RateLimit::from_headers`] as read at `now`.
    pub fn parse_at(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Self> {
        let text = |name: &str| {
            let value = headers.get(name)?.to_str().ok()?.trim();
            (value.len() <= 64).then_some(value)
        };
        let limit: u32 = text("x-ratelimit-limit-requests")?.parse().ok()?;
        let remaining: u32 = text("x-ratelimit-remaining-requests")?.parse().ok()?;
        let reset = DateTime::parse_from_rfc3339(text("x-ratelimit-reset-requests")?)
            .ok()?
            .with_timezone(&Utc);
        let ahead = reset.signed_duration_since(now);
        let sane = limit > 0
            && remaining <= limit
            && ahead <= chrono::Duration::from_std(MAX_RESET_AHEAD).ok()?
            && ahead >= -chrono::Duration::from_std(MAX_RESET_AHEAD).ok()?;
        sane.then_some(Self {
            limit,
            remaining,
            reset,
        })
    }
}

/// The furthest a rate-limit window's reset may lie from now to be believed:
/// an hour.
pub const MAX_RESET_AHEAD: std::time::Duration = std::time::Duration::from_secs(3600);

/// A job's status. Unknown values are kept, never a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Still generating.
    Processing,
    /// Done; the image URL is known.
    Completed,
    /// Ended without an image (not documented by the API, but seen in practice).
    Failed,
    /// Any other status, as the API spelled it.
    Other(String),
}

impl JobStatus {
    /// Parses the API's status text.
    pub fn parse(status: &str) -> Self {
        match status {
            "processing" => Self::Processing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            other => Self::Other(other.to_string()),
        }
    }

    /// The status as the API spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Other(other) => other,
        }
    }

    /// Whether the status names a failed end (`failed`, `error`, `cancelled`, ...).
    pub fn is_failure(&self) -> bool {
        match self {
            Self::Failed => true,
            Self::Other(other) => {
                matches!(
                    other.as_str(),
                    "error"
                        | "errored"
                        | "cancelled"
                        | "canceled"
                        | "expired"
                        | "rejected"
                        | "timeout"
                )
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about the HTTP exchange behind an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    /// The Idempotency-Key the POST carried (generated unless you gave one).
    pub idempotency_key: Option<String>,
    /// Whether the API replayed the answer from its idempotency cache.
    pub replayed: bool,
    /// The rate-limit headers.
    pub rate_limit: Option<RateLimit>,
    /// The request id, when the API sent one.
    pub request_id: Option<String>,
    /// How many attempts it took.
    pub attempts: u32,
}

/// The answer to a generation request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Generation {
    /// Sync mode (`200`): the image is ready.
    Completed(CompletedImage),
    /// Async mode (`202`): the job runs in the background.
    Queued(QueuedJob),
}

impl Generation {
    /// The job id, whichever the outcome.
    pub fn job_id(&self) -> &str {
        match self {
            Generation::Completed(image) => &image.job_id,
            Generation::Queued(job) => &job.job_id,
        }
    }

    /// Facts about the HTTP exchange.
    pub fn meta(&self) -> &ResponseMeta {
        match self {
            Generation::Completed(image) => &image.meta,
            Generation::Queued(job) => &job.meta,
        }
    }
}

/// A finished image.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedImage {
    /// The job id.
    pub job_id: String,
    /// Where the image is.
    pub url: String,
    /// Seconds the generation took, when reported.
    pub generation_time: Option<f64>,
    /// The model, when reported.
    pub model: Option<String>,
    /// When the job completed, when reported (job reads only).
    pub completed_at: Option<DateTime<Utc>>,
    /// Facts about the HTTP exchange.
    pub meta: ResponseMeta,
}

/// A job accepted in async mode.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    /// The job id.
    pub job_id: String,
    /// Its status (normally `processing`).
    pub status: JobStatus,
    /// Where to poll it.
    pub status_url: Option<String>,
    /// Where the API will POST the result.
    pub webhook_url: Option<String>,
    /// When it was accepted.
    pub created_at: Option<DateTime<Utc>>,
    /// Facts about the HTTP exchange.
    pub meta: ResponseMeta,
}

/// A job as the API reports it when read.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job id.
    pub job_id: String,
    /// Its status.
    pub status: JobStatus,
    /// The image, once completed.
    pub image_url: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// When it was accepted.
    pub created_at: Option<DateTime<Utc>>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds the generation took.
    pub generation_time: Option<f64>,
    /// Why it failed, when it did and the API said.
    pub error_message: Option<String>,
    /// A machine-readable failure reason.
    pub error_code: Option<String>,
    /// The rate-limit headers of the read.
    pub rate_limit: Option<RateLimit>,
}

impl Job {
    pub(crate) fn from_api(job: types::GenerationJob, rate_limit: Option<RateLimit>) -> Self {
        let (error_message, error_code) =
            job.error.map(|e| (e.message, e.code)).unwrap_or_default();
        Self {
            job_id: job.job_id,
            status: JobStatus::parse(&job.status),
            image_url: job.image_url,
            model: job.model,
            created_at: job.created_at,
            completed_at: job.completed_at,
            generation_time: job.generation_time,
            error_message,
            error_code,
            rate_limit,
        }
    }

    /// Whether the job has ended (successfully or not). An unknown status is
    /// taken as ended when the job says it completed or failed by its fields.
    pub fn is_terminal(&self) -> bool {
        self.status == JobStatus::Completed
            || self.status.is_failure()
            || self.error_message.is_some()
            || self.error_code.is_some()
            || self.completed_at.is_some()
    }
}

pub(crate) fn generation_from_api(
    answer: types::GenerationResponse,
    http_status: u16,
    meta: ResponseMeta,
) -> crate::Result<Generation> {
    let status = JobStatus::parse(&answer.status);
    match (http_status, status, answer.url) {
        (_, JobStatus::Completed, Some(url)) => Ok(Generation::Completed(CompletedImage {
            job_id: answer.job_id,
            url,
            generation_time: answer.generation_time,
            model: answer.model,
            completed_at: None,
            meta,
        })),
        (202, status, _) => Ok(Generation::Queued(QueuedJob {
            job_id: answer.job_id,
            status,
            status_url: answer.status_url,
            webhook_url: answer.webhook_url,
            created_at: answer.created_at,
            meta,
        })),
        (_, status, _) if status.is_failure() || answer.error.is_some() => {
            let (message, code) = answer
                .error
                .map(|e| (e.message, e.code))
                .unwrap_or_default();
            Err(crate::Error::JobFailed {
                job_id: answer.job_id,
                status: status.to_string(),
                message,
                code,
            })
        }
        (_, status, _) => Err(crate::Error::UnexpectedResponse {
            status: http_status,
            detail: format!(
                "job {} has status `{status}` but no image URL",
                answer.job_id
            ),
        }),
    }
}
