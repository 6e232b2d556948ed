//! Telling people about images: a small object-safe [`Notifier`] trait with a
//! backend per cargo feature (`slack`, `webhook-notify`). Failures are
//! announced too (moderation, insufficient funds, failed jobs).

#[cfg(feature = "slack")]
mod slack;
#[cfg(feature = "webhook-notify")]
mod webhook;

use std::fmt::Debug;
use std::time::Duration;

use serde::Serialize;

#[cfg(feature = "slack")]
pub use slack::{SlackError, SlackNotifier};
#[cfg(feature = "webhook-notify")]
pub use webhook::SignedWebhookNotifier;

/// What happened to a job, as notifiers announce it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Notification {
    /// An image was generated and stored.
    Stored {
        /// The job.
        job_id: String,
        /// The prompt.
        prompt: String,
        /// The model.
        model: Option<String>,
        /// Width in pixels.
        width: Option<u32>,
        /// Height in pixels.
        height: Option<u32>,
        /// Seconds the generation took.
        generation_time: Option<f64>,
        /// Where it is stored, for people.
        location: String,
        /// A URL anyone can open for a while (presigned), when there is one.
        share_url: Option<String>,
        /// SHA-256 of the image.
        sha256: String,
    },
    /// A generation did not produce a stored image.
    Failed {
        /// The job, when one was created.
        job_id: Option<String>,
        /// The prompt.
        prompt: String,
        /// Why, in a few words (`moderation`, `insufficient_funds`, `job_failed`...).
        reason: String,
        /// The full explanation.
        message: String,
    },
}

impl Notification {
    /// The job id, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Notification::Stored { job_id, .. } => Some(job_id),
            Notification::Failed { job_id, .. } => job_id.as_deref(),
        }
    }

    /// A short kind for ids and logs: `stored` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::Stored { .. } => "stored",
            Notification::Failed { .. } => "failed",
        }
    }
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver refused the message for good (a bad payload, a deleted
    /// channel, a revoked URL): retrying the same message cannot help.
    #[error("{notifier} refused the message: {reason}")]
    Rejected {
        /// Which notifier.
        notifier: &'static str,
        /// The receiver's reason.
        reason: String,
    },
    /// The receiver asked to slow down and the notifier gave up waiting.
    #[error("{notifier} is rate limiting; retry after {retry_after:?}")]
    RateLimited {
        /// Which notifier.
        notifier: &'static str,
        /// How long it asked to wait.
        retry_after: Duration,
    },
    /// The receiver failed or could not be reached.
    #[error("{notifier} is unavailable: {reason}")]
    Unavailable {
        /// Which notifier.
        notifier: &'static str,
        /// What went wrong (never the secret URL).
        reason: String,
    },
}

impl NotifyError {
    /// Whether sending the same message later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, NotifyError::Rejected { .. })
    }
}

/// A place to announce jobs. Object-safe: use it as `Arc<dyn Notifier>`.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + Debug {
    /// A stable name for this notifier (`slack`, `webhook`), used to record
    /// which notifications were sent.
    fn name(&self) -> &str;

    /// Delivers one notification.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// A reqwest error without its URL, which may be a secret (a Slack webhook).
#[cfg(any(feature = "slack", feature = "webhook-notify"))]
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let source = std::error::Error::source(error)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    format!("{kind}{source}")
}
